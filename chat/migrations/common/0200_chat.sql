-- Chat moderation state that must outlive the room log: bans, moderators, slow mode. Versions
-- 0200+ belong to the chat role.
CREATE TABLE chat_bans (
    stream_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (stream_id, member_id)
);

CREATE TABLE chat_moderators (
    stream_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (stream_id, buyer_id)
);

CREATE TABLE chat_settings (
    stream_id TEXT PRIMARY KEY,
    slow_mode_seconds BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
