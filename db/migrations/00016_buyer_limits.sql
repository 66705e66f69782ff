-- +goose Up
-- Who holds a booking's seats, for the cap on the seats one buyer may hold of one show: opaque
-- keys of the browser session, the client's address and the phone number (MACs the web makes)
-- and the card's fingerprint. The booking service only compares them; '' is not compared.
-- Counted through held_seats, so a failed booking, whose seats are released, no longer counts.
ALTER TABLE booking.bookings
    ADD COLUMN buyer_session text NOT NULL DEFAULT '',
    ADD COLUMN buyer_address text NOT NULL DEFAULT '',
    ADD COLUMN buyer_phone   text NOT NULL DEFAULT '',
    ADD COLUMN buyer_card    text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE booking.bookings
    DROP COLUMN buyer_session, DROP COLUMN buyer_address, DROP COLUMN buyer_phone, DROP COLUMN buyer_card;
