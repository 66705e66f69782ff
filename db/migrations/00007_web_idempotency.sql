-- +goose Up
-- Booking requests by idempotency key: a double click, a retry or a reload sends the same key,
-- and gets the first booking back instead of making a second one.
CREATE TABLE web.booking_requests (
    idempotency_key text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 8 AND 200),
    request_hash    text        NOT NULL, -- of the request without the card number (its last four only)
    booking_id      uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE web.booking_requests;
