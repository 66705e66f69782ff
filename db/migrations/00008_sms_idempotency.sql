-- +goose Up
-- The sandbox SMS provider honours idempotency keys, as the notification service requires of
-- every provider: a resend after a crash delivers nothing new.
ALTER TABLE sms_sandbox.messages ADD COLUMN IF NOT EXISTS idempotency_key text UNIQUE;

-- +goose Down
ALTER TABLE sms_sandbox.messages DROP COLUMN idempotency_key;
