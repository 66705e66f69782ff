-- +goose Up
-- Seat holds that end by themselves, and refunds for payments that come too late.

-- The booking service holds confirmed seats until hold_expires_at. Its sweeper announces an
-- expiry (expiry_requested_at; again if unanswered for long) and frees the seats when
-- payment-topic answers.
ALTER TABLE booking.bookings
    ADD COLUMN hold_expires_at     timestamptz,
    ADD COLUMN expiry_requested_at timestamptz;
CREATE INDEX bookings_open_holds ON booking.bookings (hold_expires_at) WHERE status = 'confirmed';

-- The payment service writes its row before it calls the processor ('charging'), so whoever
-- closes an expired hold knows a charge may be open. 'expiring' means the hold ran out while it
-- was: the charge no longer counts and whatever it took is refunded ('refunded').
ALTER TABLE payment.payments ALTER COLUMN outcome_event DROP NOT NULL;
ALTER TABLE payment.payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payment.payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('charging', 'expiring', 'succeeded', 'failed', 'refunded'));
ALTER TABLE payment.payments
    ADD COLUMN refund_ref text        NOT NULL DEFAULT '',
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The sandbox processor's refunds: at most one per charge, keyed by the caller's idempotency key.
CREATE TABLE payment_sandbox.refunds (
    idempotency_key  text PRIMARY KEY,
    reference        text        NOT NULL UNIQUE,
    charge_reference text        NOT NULL UNIQUE REFERENCES payment_sandbox.charges (reference),
    amount_cents     bigint      NOT NULL,
    reason           text        NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE payment_sandbox.refunds;
-- A refunded payment stays a failed one (so a replayed confirmation charges nothing); open
-- ones carry no outcome yet and cannot be kept.
UPDATE payment.payments SET status = 'failed' WHERE status = 'refunded';
DELETE FROM payment.payments WHERE status NOT IN ('succeeded', 'failed');
ALTER TABLE payment.payments DROP COLUMN refund_ref, DROP COLUMN updated_at;
ALTER TABLE payment.payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payment.payments ADD CONSTRAINT payments_status_check CHECK (status IN ('succeeded', 'failed'));
ALTER TABLE payment.payments ALTER COLUMN outcome_event SET NOT NULL;
DROP INDEX booking.bookings_open_holds;
ALTER TABLE booking.bookings DROP COLUMN hold_expires_at, DROP COLUMN expiry_requested_at;
