-- A stream's timeline: the room events a replay shows again (chat lines, pins, flash sales,
-- unpins, stock counts, final captions), with the Unix milliseconds each was appended at.
-- Written in batches by one writer per node (each event is appended once in the cluster);
-- a chat line a moderator deletes is deleted here too; a deleted stream's rows go with it.
CREATE TABLE chat_timeline (
    id INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE INDEX chat_timeline_by_stream ON chat_timeline (stream_id, at_ms);
CREATE INDEX chat_timeline_by_event ON chat_timeline (stream_id, event_id);
