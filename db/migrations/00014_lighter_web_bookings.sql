-- +goose Up
-- Every stage rewrites its booking's row, and a row's every index takes a new entry each time
-- (its status and seat version change, so the update cannot be HOT). Two of the four indexes
-- are not worth that on the busiest table:
-- * web_bookings_show: a show's bookings are found through web_bookings_show_version, whose
--   first column is the show;
-- * web_bookings_ticket held an entry for every booking, ticketed or not: now only tickets.
DROP INDEX web.web_bookings_show;
DROP INDEX web.web_bookings_ticket;
CREATE UNIQUE INDEX web_bookings_ticket ON web.bookings ((ticket->>'ticket_id')) WHERE ticket IS NOT NULL;

-- +goose Down
DROP INDEX web.web_bookings_ticket;
CREATE UNIQUE INDEX web_bookings_ticket ON web.bookings ((ticket->>'ticket_id'));
CREATE INDEX web_bookings_show ON web.bookings (show_id) WHERE status IN ('requested', 'confirmed', 'paid', 'notified', 'ticketed');
