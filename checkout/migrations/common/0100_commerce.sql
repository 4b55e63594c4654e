-- Checkout's tables: catalog, guest buyers, pins (flash sales), orders, idempotency keys, and the
-- sandbox card processor's ledger. Versions 0100+ belong to checkout; the binary's own tables use
-- 0001-0099. Types are the ones SQLite and PostgreSQL both read the same way through sqlx's Any
-- driver: TEXT ids, BIGINT minor units, counts, flags and unix milliseconds. No foreign key leaves
-- this crate's tables: a seller or stream id is checked by the caller that owns it.
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    image_url TEXT,
    price_amount BIGINT NOT NULL CHECK (price_amount >= 0),
    currency TEXT NOT NULL,
    stock BIGINT NOT NULL CHECK (stock >= 0),
    archived BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (seller_id, sku)
);
CREATE INDEX products_by_seller ON products (seller_id, created_at);

CREATE TABLE buyers (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE pins (
    id TEXT PRIMARY KEY,
    stream_id TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id),
    sale_amount BIGINT CHECK (sale_amount IS NULL OR sale_amount >= 0),
    per_buyer_limit BIGINT,
    quantity_cap BIGINT,
    remaining BIGINT CHECK (remaining IS NULL OR remaining >= 0),
    ends_at BIGINT,
    active BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    unpinned_at BIGINT
);
CREATE UNIQUE INDEX pins_one_active_per_stream ON pins (stream_id) WHERE active = 1;
CREATE INDEX pins_by_product ON pins (product_id, active);

CREATE TABLE pin_buyers (
    pin_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (pin_id, buyer_id)
);

CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    buyer_id TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id),
    pin_id TEXT,
    stream_id TEXT,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_amount BIGINT NOT NULL,
    total_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')),
    failure TEXT,
    payment_id TEXT,
    card_last4 TEXT,
    reserved_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_pending ON orders (status, reserved_until);
CREATE INDEX orders_by_buyer ON orders (buyer_id, created_at);
CREATE INDEX orders_by_seller ON orders (seller_id, created_at);

CREATE TABLE idempotency_keys (
    buyer_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id TEXT,
    response TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (buyer_id, idem_key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE sandbox_payments (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL UNIQUE,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status TEXT NOT NULL,
    decline_code TEXT,
    refunded_amount BIGINT NOT NULL DEFAULT 0,
    settles_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
