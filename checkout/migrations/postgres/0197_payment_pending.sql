-- Payments confirmed after the request (3-D Secure, bank debits): a new status
-- 'payment_pending' while the order waits for them, and where the buyer completes the payment.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'payment_pending', 'paid', 'fulfilled', 'delivered',
                      'cancelled', 'refunded'));
ALTER TABLE orders ADD COLUMN payment_action TEXT;
