-- +goose Up
-- Every service gets a transactional outbox (the events its state changes cause, written in
-- the same transaction and published by its relay) and an inbox (the ids of the events it has
-- handled, written in the same transaction as their effect, so a redelivered or replayed event
-- changes nothing).
CREATE TABLE booking.outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    envelope   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE booking.inbox (
    event_id   text PRIMARY KEY,
    handled_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payment.outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    envelope   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE payment.inbox (
    event_id   text PRIMARY KEY,
    handled_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notification.outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    envelope   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE notification.inbox (
    event_id   text PRIMARY KEY,
    handled_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ticket.outbox (
    id         bigserial PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    envelope   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ticket.inbox (
    event_id   text PRIMARY KEY,
    handled_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE booking.outbox, booking.inbox;
DROP TABLE payment.outbox, payment.inbox;
DROP TABLE notification.outbox, notification.inbox;
DROP TABLE ticket.outbox, ticket.inbox;
