-- +goose Up
-- The live seat map: every change to a booking's status takes a new number from one sequence,
-- so a seat map rendered at version V can ask for exactly the bookings that changed after it.
CREATE SEQUENCE web.seat_changes;
ALTER TABLE web.bookings ADD COLUMN seat_version bigint NOT NULL DEFAULT nextval('web.seat_changes');
CREATE INDEX web_bookings_show_version ON web.bookings (show_id, seat_version);

-- When a confirmed booking's seat hold runs out: the status page counts down to it.
ALTER TABLE web.bookings ADD COLUMN hold_expires_at timestamptz;

-- Tickets admitted at a cinema's door: the first scan admits, every later one is told when.
CREATE TABLE web.admissions (
    ticket_id   text PRIMARY KEY,
    admitted_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE web.admissions;
ALTER TABLE web.bookings DROP COLUMN hold_expires_at;
DROP INDEX web.web_bookings_show_version;
ALTER TABLE web.bookings DROP COLUMN seat_version;
DROP SEQUENCE web.seat_changes;
