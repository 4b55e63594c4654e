-- Where an order was placed: 'live' (the live room's chat), 'replay' (a stream's replay, with
-- the moment the buyer was at, media_ms from the replay's start) or 'api'. Orders placed
-- before this was kept read 'api'.
ALTER TABLE orders ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
ALTER TABLE orders ADD COLUMN media_ms BIGINT;
