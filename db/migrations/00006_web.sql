-- +goose Up
-- The web's own projection of every booking, built from the five topics: the truth the status
-- page renders on (re)load, and the seat map's view of which seats are taken.
CREATE SCHEMA web;

CREATE TABLE web.bookings (
    id            uuid PRIMARY KEY,
    show_id       text        NOT NULL,
    seats         text[]      NOT NULL,
    customer_name text        NOT NULL,
    phone_masked  text        NOT NULL,
    card_brand    text        NOT NULL,
    card_last4    text        NOT NULL,
    status        text        NOT NULL CHECK (status IN
                  ('requested', 'confirmed', 'paid', 'notified', 'ticketed', 'rejected', 'failed')),
    reason        text        NOT NULL DEFAULT '',
    ticket        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX web_bookings_show ON web.bookings (show_id) WHERE status IN ('requested', 'confirmed', 'paid', 'notified', 'ticketed');

CREATE UNIQUE INDEX web_bookings_ticket ON web.bookings ((ticket->>'ticket_id'));

-- One row per stage a booking went through; the event id makes replays change nothing.
CREATE TABLE web.booking_stages (
    booking_id uuid        NOT NULL REFERENCES web.bookings (id),
    name       text        NOT NULL,
    at         timestamptz NOT NULL,
    detail     text        NOT NULL DEFAULT '',
    event_id   text        NOT NULL,
    PRIMARY KEY (booking_id, name)
);

-- +goose Down
DROP SCHEMA web CASCADE;
