-- The stream of commerce facts: each row is what one committed transaction of the order path
-- changed that the rooms must hear (a JSON list of events), written in that transaction.
-- `origin` names the process that wrote it and `seq` counts its rows in the order their
-- transactions took their locks; a pump reads them back after the commit, in that order.
CREATE TABLE commerce_facts (
    origin TEXT NOT NULL,
    seq BIGINT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (origin, seq)
);
CREATE INDEX commerce_facts_by_age ON commerce_facts (created_at);
