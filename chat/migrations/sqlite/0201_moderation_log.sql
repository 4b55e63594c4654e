-- Every moderation act (delete, ban, unban, slow mode, moderators added and removed): who did
-- it, in which role, to whom, when. Written in the same transaction as the act's effect, read
-- by the stream's seller, never changed afterwards.
CREATE TABLE chat_moderation_log (
    id INTEGER PRIMARY KEY,
    stream_id TEXT NOT NULL,
    action TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    member_id TEXT,
    message_id TEXT,
    seconds BIGINT,
    created_at BIGINT NOT NULL
);

CREATE INDEX chat_moderation_log_by_stream ON chat_moderation_log (stream_id, id);
