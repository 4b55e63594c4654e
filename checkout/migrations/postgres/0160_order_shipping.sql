-- Shipping: the carrier and tracking number a seller gives when fulfilling (shipping) an
-- order, when it shipped, and a new status 'delivered' with when the seller marked it so.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'paid', 'fulfilled', 'delivered', 'cancelled', 'refunded'));
ALTER TABLE orders ADD COLUMN carrier TEXT;
ALTER TABLE orders ADD COLUMN tracking_number TEXT;
ALTER TABLE orders ADD COLUMN shipped_at BIGINT;
ALTER TABLE orders ADD COLUMN delivered_at BIGINT;
