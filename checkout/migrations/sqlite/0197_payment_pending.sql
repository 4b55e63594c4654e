-- Payments confirmed after the request (3-D Secure, bank debits): a new status
-- 'payment_pending' while the order waits for them, and where the buyer completes the payment.
-- SQLite cannot change a CHECK constraint: the table is rebuilt with every row (no table
-- refers to orders).
CREATE TABLE orders_payment (
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
        CHECK (status IN ('pending', 'payment_pending', 'paid', 'fulfilled', 'delivered',
                          'cancelled', 'refunded')),
    failure TEXT,
    payment_id TEXT,
    card_last4 TEXT,
    reserved_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    presentment TEXT,
    source TEXT NOT NULL DEFAULT 'api',
    media_ms BIGINT,
    carrier TEXT,
    tracking_number TEXT,
    shipped_at BIGINT,
    delivered_at BIGINT,
    payment_action TEXT
);
INSERT INTO orders_payment (id, buyer_id, seller_id, product_id, pin_id, stream_id, quantity,
    unit_amount, total_amount, currency, status, failure, payment_id, card_last4,
    reserved_until, created_at, updated_at, presentment, source, media_ms, carrier,
    tracking_number, shipped_at, delivered_at)
SELECT id, buyer_id, seller_id, product_id, pin_id, stream_id, quantity, unit_amount,
    total_amount, currency, status, failure, payment_id, card_last4, reserved_until,
    created_at, updated_at, presentment, source, media_ms, carrier, tracking_number,
    shipped_at, delivered_at
FROM orders;
DROP TABLE orders;
ALTER TABLE orders_payment RENAME TO orders;
CREATE INDEX orders_pending ON orders (status, reserved_until);
CREATE INDEX orders_by_buyer ON orders (buyer_id, created_at);
CREATE INDEX orders_by_seller ON orders (seller_id, created_at);
