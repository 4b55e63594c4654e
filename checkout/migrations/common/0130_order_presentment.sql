-- An order priced for its buyer in another currency keeps the quote it was priced with (the
-- converted total, both rates, their source and time) as JSON: locked, whatever the rates do
-- afterwards.
ALTER TABLE orders ADD COLUMN presentment TEXT;
