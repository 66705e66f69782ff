-- +goose Up
-- The booking service's own state: which bookings it accepted and which seats they hold.
CREATE SCHEMA booking;

CREATE TABLE booking.bookings (
    id            uuid PRIMARY KEY,
    show_id       text        NOT NULL,
    seats         text[]      NOT NULL,
    customer_name text        NOT NULL,
    phone_masked  text        NOT NULL,
    amount_cents  bigint      NOT NULL,
    currency      text        NOT NULL,
    -- confirmed → paid, or confirmed → failed (seats released); rejected bookings never held seats.
    status        text        NOT NULL CHECK (status IN ('confirmed', 'rejected', 'paid', 'failed')),
    reason_code   text        NOT NULL DEFAULT '',
    reason        text        NOT NULL DEFAULT '',
    outcome_event jsonb       NOT NULL, -- the movie-found event published, re-sent on redelivery
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The rule that makes a seat sold twice impossible: one row per (show, seat), whoever holds it.
-- A failed booking's rows are deleted, which frees its seats.
CREATE TABLE booking.held_seats (
    show_id    text NOT NULL,
    seat_label text NOT NULL,
    booking_id uuid NOT NULL REFERENCES booking.bookings (id),
    PRIMARY KEY (show_id, seat_label)
);
CREATE INDEX held_seats_booking ON booking.held_seats (booking_id);

-- +goose Down
DROP SCHEMA booking CASCADE;
