-- Refunds recorded before the processor is asked (one per order; its id is the processor's
-- idempotency key), a seller's debt when refunds exceed the available balance (an explicit
-- ledger account, projected here), idempotency attempts that failed and may be resumed, and
-- the sandbox processor's refund keys.
CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    seller_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX refunds_pending ON refunds (status, updated_at);

ALTER TABLE seller_balances ADD COLUMN debt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE idempotency_keys ADD COLUMN failed_at BIGINT;
ALTER TABLE sandbox_payments ADD COLUMN refund_key TEXT;
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (status, updated_at);
