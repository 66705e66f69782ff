-- +goose Up
-- Door staff's signed-in devices, so that signing out ends a session on the server and not only
-- in the browser: a copied cookie dies with its row. The token itself is never stored, only its
-- SHA-256; key_mac ties a session to the door key it was opened with, so a new key ends them all.
CREATE TABLE web.door_sessions (
    token_hash bytea PRIMARY KEY,
    key_mac    bytea       NOT NULL,
    expires_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE web.door_sessions;
