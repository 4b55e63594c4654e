-- Webhook messages ride on the stream of commerce facts: a transaction writes them in its
-- fact row (`hooks`, a JSON list), and a dispatcher expands each committed row into messages
-- and deliveries once (`hooks_pending` goes from 1 to 0 in the expanding transaction).
ALTER TABLE commerce_facts ADD COLUMN hooks TEXT;
ALTER TABLE commerce_facts ADD COLUMN hooks_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX commerce_facts_hooks_pending ON commerce_facts (created_at) WHERE hooks_pending = 1;
