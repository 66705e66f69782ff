-- +goose Up
-- The ticket service's own state: issued tickets, one per booking.
CREATE SCHEMA ticket;

CREATE TABLE ticket.tickets (
    id               uuid PRIMARY KEY,
    booking_id       uuid        NOT NULL UNIQUE, -- one ticket per booking
    code             text        NOT NULL UNIQUE,
    show_id          text        NOT NULL,
    movie_title      text        NOT NULL,
    theatre_name     text        NOT NULL,
    theatre_location text        NOT NULL,
    starts_at        timestamptz NOT NULL,
    screen_number    int         NOT NULL,
    seats            text[]      NOT NULL,
    booked_under     text        NOT NULL,
    amount_cents     bigint      NOT NULL,
    currency         text        NOT NULL,
    issued_at        timestamptz NOT NULL,
    outcome_event    jsonb       NOT NULL
);

-- +goose Down
DROP SCHEMA ticket CASCADE;
