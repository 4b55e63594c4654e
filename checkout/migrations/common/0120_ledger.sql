-- Sellers' money: the double-entry ledger (entries whose postings sum to zero per currency),
-- the balances projected from it, payouts, and the sandbox payout rail's own records.
CREATE TABLE ledger_entries (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('sale', 'refund', 'payout', 'payout_paid', 'payout_failed')),
    reference TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX ledger_entries_once ON ledger_entries (kind, reference);
CREATE INDEX ledger_entries_by_seller ON ledger_entries (seller_id, created_at);

CREATE TABLE ledger_postings (
    entry_id TEXT NOT NULL REFERENCES ledger_entries (id),
    account TEXT NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (entry_id, account)
);
CREATE INDEX ledger_postings_by_account ON ledger_postings (account);

CREATE TABLE seller_balances (
    seller_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    available BIGINT NOT NULL,
    in_transit BIGINT NOT NULL,
    PRIMARY KEY (seller_id, currency)
);

CREATE TABLE payouts (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    fee BIGINT NOT NULL,
    currency TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('standard', 'instant')),
    status TEXT NOT NULL CHECK (status IN ('in_transit', 'paid', 'failed')),
    failure TEXT,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX payouts_by_key ON payouts (seller_id, idempotency_key);
CREATE INDEX payouts_by_seller ON payouts (seller_id, created_at);
CREATE INDEX payouts_in_transit ON payouts (status, created_at);

CREATE TABLE sandbox_payouts (
    reference TEXT PRIMARY KEY,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    arrives_at BIGINT NOT NULL,
    failure TEXT
);
