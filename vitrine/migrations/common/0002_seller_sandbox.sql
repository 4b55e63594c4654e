-- Test mode: each seller may have one sandbox account of its own, which test-mode API keys act
-- on, so that an integration can be tried without touching the seller's real data.
ALTER TABLE sellers ADD COLUMN sandbox_of TEXT;
CREATE UNIQUE INDEX sellers_sandbox ON sellers (sandbox_of);
