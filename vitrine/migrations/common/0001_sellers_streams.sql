-- Sellers (tenants) and their streams. Kept to types both SQLite and PostgreSQL read the same
-- way through sqlx's Any driver: TEXT ids, BIGINT unix milliseconds.
CREATE TABLE sellers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    api_token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL REFERENCES sellers (id),
    title TEXT NOT NULL,
    stream_key_hash TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('idle', 'live', 'ended')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX streams_by_seller ON streams (seller_id, created_at);
