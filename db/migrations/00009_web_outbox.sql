-- +goose Up
-- The web's transactional outbox: a booking request is recorded and queued for booking-movie in
-- one transaction; the relay publishes it and deletes the row.
CREATE TABLE web.outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    envelope   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE web.outbox;
