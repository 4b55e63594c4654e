-- Live auctions: one open auction per stream, of the product the stream has pinned. The unit
-- it sells is taken from stock when it starts (so the hammer can always sell it) and given back
-- when nobody bids. A bid moves the auction's row with one conditional UPDATE; every bid, taken
-- or not, is kept by its bidder's idempotency key with the answer it got.
CREATE TABLE auctions (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id),
    currency TEXT NOT NULL,
    start_amount BIGINT NOT NULL CHECK (start_amount >= 0),
    increment_amount BIGINT NOT NULL CHECK (increment_amount > 0),
    current_amount BIGINT,
    bidder_id TEXT,
    bidder_name TEXT,
    bid_count BIGINT NOT NULL DEFAULT 0,
    ends_at BIGINT NOT NULL,
    extend_ms BIGINT NOT NULL CHECK (extend_ms >= 0),
    sudden_death BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'ended')),
    order_id TEXT,
    created_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE UNIQUE INDEX auctions_one_open_per_stream ON auctions (stream_id) WHERE status = 'open';
CREATE INDEX auctions_due ON auctions (status, ends_at);

CREATE TABLE auction_bids (
    buyer_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    auction_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    -- NULL while its transaction runs; then the answer: 'accepted' or the refusal's reason.
    outcome TEXT,
    detail TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (buyer_id, idem_key)
);
CREATE INDEX auction_bids_by_auction ON auction_bids (auction_id, created_at);
CREATE INDEX auction_bids_by_age ON auction_bids (created_at);
