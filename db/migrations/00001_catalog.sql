-- +goose Up
-- The catalog is the cinema's reference data: what is showing, where and when. It changes only
-- through migrations and the schedule seeder; at run time every service only reads it.
CREATE SCHEMA catalog;

CREATE TABLE catalog.movies (
    id              text PRIMARY KEY,
    title           text NOT NULL,
    tagline         text NOT NULL,
    synopsis        text NOT NULL,
    runtime_minutes int  NOT NULL CHECK (runtime_minutes > 0),
    age_rating      text NOT NULL,
    genre           text NOT NULL,
    poster_hue      int  NOT NULL DEFAULT 210 -- the colour of the drawn poster, 0-359
);

CREATE TABLE catalog.theatres (
    id       text PRIMARY KEY,
    name     text NOT NULL,
    city     text NOT NULL,
    address  text NOT NULL,
    timezone text NOT NULL
);

CREATE TABLE catalog.screens (
    id         text PRIMARY KEY,
    theatre_id text NOT NULL REFERENCES catalog.theatres (id),
    number     int  NOT NULL,
    name       text NOT NULL,
    UNIQUE (theatre_id, number)
);

-- One row per physical seat. "position" is the seat's column on the map counting aisles, so
-- the map can leave a gap where people walk.
CREATE TABLE catalog.seats (
    screen_id text NOT NULL REFERENCES catalog.screens (id),
    label     text NOT NULL,
    row_label text NOT NULL,
    number    int  NOT NULL,
    position  int  NOT NULL,
    PRIMARY KEY (screen_id, label)
);

CREATE TABLE catalog.shows (
    id          text PRIMARY KEY,
    movie_id    text        NOT NULL REFERENCES catalog.movies (id),
    screen_id   text        NOT NULL REFERENCES catalog.screens (id),
    starts_at   timestamptz NOT NULL,
    price_cents bigint      NOT NULL CHECK (price_cents > 0),
    currency    text        NOT NULL DEFAULT 'GBP',
    UNIQUE (screen_id, starts_at)
);
CREATE INDEX shows_movie_starts ON catalog.shows (movie_id, starts_at);

-- +goose Down
DROP SCHEMA catalog CASCADE;
