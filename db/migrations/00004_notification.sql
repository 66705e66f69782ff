-- +goose Up
-- The notification service's own state: how to reach each booking's customer (learnt from
-- booking-movie, the only topic that carries a full phone number) and what it sent.
CREATE SCHEMA notification;

CREATE TABLE notification.contacts (
    booking_id    uuid PRIMARY KEY,
    customer_name text        NOT NULL,
    phone         text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notification.messages (
    booking_id    uuid        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('booking_confirmed', 'payment_failed')),
    status        text        NOT NULL CHECK (status IN ('delivered', 'failed')),
    provider_id   text        NOT NULL DEFAULT '',
    error         text        NOT NULL DEFAULT '',
    outcome_event jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (booking_id, kind) -- one SMS per booking and kind
);

-- The sandbox SMS provider's inbox: stands in for the phone network, shown at /dev/sms.
CREATE SCHEMA sms_sandbox;

CREATE TABLE sms_sandbox.messages (
    id         text PRIMARY KEY,
    phone      text        NOT NULL,
    body       text        NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_messages_sent ON sms_sandbox.messages (sent_at DESC);

-- +goose Down
DROP SCHEMA sms_sandbox CASCADE;
DROP SCHEMA notification CASCADE;
