-- The platform's operators: who may read the cluster's view and drain its nodes. A seller's
-- token never can; an operator's token is stored hashed, as every token is.
CREATE TABLE operators (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
