-- A flash sale's per-buyer limit also holds per client address (times a configured factor), so
-- that minting guest buyers from one address does not multiply it: the units each address
-- holds in each sale, taken before the order and given back when the order is refused.
CREATE TABLE pin_addresses (
    pin_id TEXT NOT NULL,
    address TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (pin_id, address)
);
