-- +goose Up
-- The payment service's own state. Only the card's brand, last four digits and the gateway's
-- token are stored: the full number never leaves the web tier.
CREATE SCHEMA payment;

CREATE TABLE payment.payments (
    booking_id    uuid PRIMARY KEY, -- one charge per booking, at most
    amount_cents  bigint      NOT NULL,
    currency      text        NOT NULL,
    card_brand    text        NOT NULL,
    card_last4    text        NOT NULL,
    card_token    text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('succeeded', 'failed')),
    gateway_ref   text        NOT NULL DEFAULT '',
    failure_code  text        NOT NULL DEFAULT '',
    failure       text        NOT NULL DEFAULT '',
    outcome_event jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The sandbox gateway's ledger: stands in for the card processor. Charges are keyed by the
-- caller's idempotency key (the booking id), as real processors do, so a retried charge
-- returns the first result instead of charging again.
CREATE SCHEMA payment_sandbox;

CREATE TABLE payment_sandbox.charges (
    idempotency_key text PRIMARY KEY,
    reference       text        NOT NULL UNIQUE,
    card_token      text        NOT NULL,
    amount_cents    bigint      NOT NULL,
    currency        text        NOT NULL,
    approved        boolean     NOT NULL,
    decline_code    text        NOT NULL DEFAULT '',
    decline_reason  text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP SCHEMA payment_sandbox CASCADE;
DROP SCHEMA payment CASCADE;
