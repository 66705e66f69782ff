// Package catalog reads the cinema's reference data — movies, theatres, screens, seats and
// shows. Both the web (to render) and the booking service (to check a request) read it; nothing
// writes it at run time except the schedule seeder.
package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// ErrNotFound is returned when a movie or show does not exist.
var ErrNotFound = errors.New("not found")

// Movie is one film on the programme.
type Movie struct {
	ID             string `db:"id" json:"id"`
	Title          string `db:"title" json:"title"`
	Tagline        string `db:"tagline" json:"tagline"`
	Synopsis       string `db:"synopsis" json:"synopsis"`
	RuntimeMinutes int    `db:"runtime_minutes" json:"runtime_minutes"`
	AgeRating      string `db:"age_rating" json:"age_rating"`
	Genre          string `db:"genre" json:"genre"`
	PosterHue      int    `db:"poster_hue" json:"-"`
}

// Show is one screening with everything needed to describe it.
type Show struct {
	ID              string    `db:"id" json:"id"`
	MovieID         string    `db:"movie_id" json:"movie_id"`
	MovieTitle      string    `db:"movie_title" json:"movie_title"`
	ScreenID        string    `db:"screen_id" json:"screen_id"`
	ScreenNumber    int       `db:"screen_number" json:"screen_number"`
	TheatreID       string    `db:"theatre_id" json:"theatre_id"`
	TheatreName     string    `db:"theatre_name" json:"theatre_name"`
	TheatreCity     string    `db:"theatre_city" json:"theatre_city"`
	TheatreAddress  string    `db:"theatre_address" json:"theatre_address"`
	TheatreTimezone string    `db:"theatre_timezone" json:"-"`
	StartsAt        time.Time `db:"starts_at" json:"starts_at"`
	PriceCents      int64     `db:"price_cents" json:"price_cents"`
	Currency        string    `db:"currency" json:"currency"`
}

// TheatreLocation is the address a ticket prints: street address and city.
func (s Show) TheatreLocation() string { return s.TheatreAddress + ", " + s.TheatreCity }

// LocalStart is the show's start in its theatre's time zone, as the ticket prints it.
func (s Show) LocalStart() time.Time { return event.InZone(s.StartsAt, s.TheatreTimezone) }

// Seat is one physical seat of a screen.
type Seat struct {
	Label    string `db:"label" json:"label"`
	Row      string `db:"row_label" json:"row"`
	Number   int    `db:"number" json:"number"`
	Position int    `db:"position" json:"position"`
}

// Store reads the catalog.
type Store struct {
	db *sqlx.DB
}

// NewStore returns a catalog reader over db.
func NewStore(db *sqlx.DB) *Store { return &Store{db: db} }

// Movies lists the programme, alphabetically.
func (s *Store) Movies(ctx context.Context) ([]Movie, error) {
	var movies []Movie
	if err := s.db.SelectContext(ctx, &movies, `SELECT * FROM catalog.movies ORDER BY title`); err != nil {
		return nil, fmt.Errorf("list movies: %w", err)
	}
	return movies, nil
}

// Movie returns one movie, or ErrNotFound.
func (s *Store) Movie(ctx context.Context, id string) (Movie, error) {
	var m Movie
	err := s.db.GetContext(ctx, &m, `SELECT * FROM catalog.movies WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Movie{}, ErrNotFound
	}
	if err != nil {
		return Movie{}, fmt.Errorf("get movie %q: %w", id, err)
	}
	return m, nil
}

const showColumns = `
	s.id, s.movie_id, m.title AS movie_title, s.screen_id, sc.number AS screen_number,
	t.id AS theatre_id, t.name AS theatre_name, t.city AS theatre_city,
	t.address AS theatre_address, t.timezone AS theatre_timezone,
	s.starts_at, s.price_cents, s.currency
	FROM catalog.shows s
	JOIN catalog.movies m ON m.id = s.movie_id
	JOIN catalog.screens sc ON sc.id = s.screen_id
	JOIN catalog.theatres t ON t.id = sc.theatre_id`

// Show returns one show, or ErrNotFound.
func (s *Store) Show(ctx context.Context, id string) (Show, error) {
	var show Show
	err := prepared.Get(ctx, s.db, &show, `SELECT `+showColumns+` WHERE s.id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Show{}, ErrNotFound
	}
	if err != nil {
		return Show{}, fmt.Errorf("get show %q: %w", id, err)
	}
	return show, nil
}

// UpcomingShows lists a movie's shows starting between from and to, by theatre then time.
func (s *Store) UpcomingShows(ctx context.Context, movieID string, from, to time.Time) ([]Show, error) {
	var shows []Show
	err := s.db.SelectContext(ctx, &shows, `SELECT `+showColumns+`
		WHERE s.movie_id = $1 AND s.starts_at >= $2 AND s.starts_at < $3
		ORDER BY t.city, s.starts_at, sc.number`, movieID, from, to)
	if err != nil {
		return nil, fmt.Errorf("list shows of %q: %w", movieID, err)
	}
	return shows, nil
}

// Seats lists a screen's seats in map order: row by row, left to right.
func (s *Store) Seats(ctx context.Context, screenID string) ([]Seat, error) {
	var seats []Seat
	err := s.db.SelectContext(ctx, &seats, `SELECT label, row_label, number, position
		FROM catalog.seats WHERE screen_id = $1 ORDER BY row_label, position`, screenID)
	if err != nil {
		return nil, fmt.Errorf("list seats of %q: %w", screenID, err)
	}
	return seats, nil
}

// SeatCounts returns how many seats each screen has.
func (s *Store) SeatCounts(ctx context.Context) (map[string]int, error) {
	var rows []struct {
		ScreenID string `db:"screen_id"`
		Count    int    `db:"count"`
	}
	if err := s.db.SelectContext(ctx, &rows, `SELECT screen_id, count(*) AS count FROM catalog.seats GROUP BY screen_id`); err != nil {
		return nil, fmt.Errorf("count seats: %w", err)
	}
	counts := make(map[string]int, len(rows))
	for _, r := range rows {
		counts[r.ScreenID] = r.Count
	}
	return counts, nil
}
