-- +goose Up
-- Secrets the web replicas share, created once by whichever starts first: the key that signs
-- each booking's capability token (the secret in its status, events and ticket URLs).
CREATE TABLE web.secrets (
    name       text PRIMARY KEY,
    value      bytea       NOT NULL CHECK (length(value) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE web.secrets;
