-- +goose Up
-- A visitor's sandbox inbox lists only the texts of their own bookings: the texts are found by
-- the booking id that starts each one's idempotency key (booking id, a slash, the kind).
CREATE INDEX sandbox_messages_booking ON sms_sandbox.messages (split_part(idempotency_key, '/', 1));

-- +goose Down
DROP INDEX sms_sandbox.sandbox_messages_booking;
