-- +goose Up
-- Every stage of every booking updates its web.bookings row and adds a web.booking_stages row:
-- the projection's statement was a third of PostgreSQL's statement time under load. Two parts of
-- that cost bought nothing:
-- * the foreign key from a stage to its booking looked the booking up again, row by row, after
--   the statement that stores stages has already found it (it stores nothing unless every
--   booking is known) and updated it; web.bookings rows are never deleted but together with
--   their stages (TRUNCATE of both);
-- * an update that changes no indexed column can stay on its page (a HOT update: no new index
--   entries), if the page has room. The seat version changes now only when the booking's seats
--   change state (held, sold, free), so confirmed, paid and notified are such updates; pages
--   written from now on keep room for them (pages already full keep none until the table is
--   rewritten, as VACUUM FULL does).
ALTER TABLE web.booking_stages DROP CONSTRAINT booking_stages_booking_id_fkey;
ALTER TABLE web.bookings SET (fillfactor = 70);

-- +goose Down
ALTER TABLE web.bookings RESET (fillfactor);
ALTER TABLE web.booking_stages ADD CONSTRAINT booking_stages_booking_id_fkey
    FOREIGN KEY (booking_id) REFERENCES web.bookings (id);
