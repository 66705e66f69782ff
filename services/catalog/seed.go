package catalog

import (
	"context"
	"fmt"
	"slices"
	"time"
	_ "time/tzdata" // theatres name their time zone; don't depend on the host's zoneinfo

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// The demo programme: a small independent chain with three cinemas. Everything is invented.
var demoMovies = []Movie{
	{ID: "the-last-lighthouse", Title: "The Last Lighthouse", Tagline: "Someone has to keep the light on.",
		Synopsis: "On a storm-battered island off the Hebrides, the last lighthouse keeper in Scotland " +
			"refuses to leave when the light is automated — until a shipwrecked stranger washes ashore " +
			"with a story that changes everything he believed about the night his brother disappeared.",
		RuntimeMinutes: 118, AgeRating: "12A", Genre: "Drama", PosterHue: 205},
	{ID: "orbital-decay", Title: "Orbital Decay", Tagline: "Ninety minutes of air. One way down.",
		Synopsis: "When debris cripples a research station in low orbit, a rookie engineer and a " +
			"veteran commander who cannot stand each other have ninety minutes to bring a crippled " +
			"capsule home through a re-entry nobody has ever survived.",
		RuntimeMinutes: 126, AgeRating: "12A", Genre: "Science fiction", PosterHue: 260},
	{ID: "paper-tigers", Title: "Paper Tigers", Tagline: "The smallest paper in town. The biggest story of the year.",
		Synopsis: "A struggling local newspaper in Bradford has three staff, no money and one week " +
			"before closure — when its sixty-year-old crossword editor stumbles on a council " +
			"contract that does not add up.",
		RuntimeMinutes: 104, AgeRating: "15", Genre: "Comedy drama", PosterHue: 25},
	{ID: "the-quiet-hours", Title: "The Quiet Hours", Tagline: "Don't answer the door after midnight.",
		Synopsis: "A night nurse moves into a converted rectory in the Fens to care for an elderly " +
			"composer. Each night at three, the piano downstairs plays a piece he swears he never wrote.",
		RuntimeMinutes: 97, AgeRating: "15", Genre: "Horror", PosterHue: 0},
	{ID: "wild-atlantic", Title: "Wild Atlantic", Tagline: "A year on the edge of the ocean.",
		Synopsis: "Filmed over four seasons from Kerry to the Faroe Islands, a documentary that follows " +
			"puffins, basking sharks and the fishermen who share their coast, narrated by the people " +
			"who live there.",
		RuntimeMinutes: 89, AgeRating: "U", Genre: "Documentary", PosterHue: 180},
	{ID: "pip-and-the-moon-kite", Title: "Pip and the Moon Kite", Tagline: "Hold on tight.",
		Synopsis: "Eight-year-old Pip builds a kite from her grandfather's old maps and is carried up " +
			"to a town in the clouds where lost things go — and where she finds the one thing her " +
			"family has been missing.",
		RuntimeMinutes: 92, AgeRating: "U", Genre: "Animation", PosterHue: 45},
	{ID: "counterfeit", Title: "Counterfeit", Tagline: "Every masterpiece has a price.",
		Synopsis: "A gifted forger is offered her freedom in exchange for one last job: replace a " +
			"Vermeer in a Manchester gallery during the one night a year its alarms are tested.",
		RuntimeMinutes: 121, AgeRating: "12A", Genre: "Thriller", PosterHue: 330},
}

type demoTheatre struct {
	ID, Name, City, Address, Timezone string
	Screens                           []screenLayout
}

// screenLayout describes a real auditorium: lettered rows of numbered seats, with an aisle (or
// two) splitting each row.
type screenLayout struct {
	Number      int
	Name        string
	Rows        int
	SeatsPerRow int
	AisleAfter  []int // a gap after these seat numbers
}

var demoTheatres = []demoTheatre{
	{ID: "ldn", Name: "Boxoffice Bankside", City: "London", Address: "21 Sumner Street, SE1 9JZ",
		Timezone: "Europe/London", Screens: []screenLayout{
			{Number: 1, Name: "Screen 1", Rows: 12, SeatsPerRow: 16, AisleAfter: []int{4, 12}}, // 192
			{Number: 2, Name: "Screen 2", Rows: 9, SeatsPerRow: 12, AisleAfter: []int{6}},      // 108
			{Number: 3, Name: "Screen 3 · Studio", Rows: 6, SeatsPerRow: 10, AisleAfter: []int{5}},
		}},
	{ID: "man", Name: "Boxoffice Ancoats", City: "Manchester", Address: "8 Murray Street, M4 6HS",
		Timezone: "Europe/London", Screens: []screenLayout{
			{Number: 1, Name: "Screen 1", Rows: 10, SeatsPerRow: 14, AisleAfter: []int{7}}, // 140
			{Number: 2, Name: "Screen 2", Rows: 8, SeatsPerRow: 10, AisleAfter: []int{5}},  // 80
		}},
	{ID: "edi", Name: "Boxoffice Leith", City: "Edinburgh", Address: "54 Shore, EH6 6RA",
		Timezone: "Europe/London", Screens: []screenLayout{
			{Number: 1, Name: "Screen 1", Rows: 11, SeatsPerRow: 14, AisleAfter: []int{3, 11}}, // 154
			{Number: 2, Name: "Screen 2", Rows: 7, SeatsPerRow: 10, AisleAfter: []int{5}},      // 70
		}},
}

// A day's showtimes on every screen: a matinee, an early evening, a prime-time and a late show.
var demoShowtimes = []struct {
	Hour, Minute int
	PriceCents   int64
}{
	{13, 15, 950}, {16, 0, 1050}, {19, 30, 1395}, {22, 0, 1150},
}

// ScheduleDays is how far ahead the seeder keeps shows on sale.
const ScheduleDays = 7

// Seed writes the demo chain (idempotently: existing rows are left as they are) and makes sure
// every screen has shows for today and the next ScheduleDays days, so the site is never empty.
// withLoadLab adds the load-test theatre.
func Seed(ctx context.Context, db *sqlx.DB, now time.Time, withLoadLab bool) error {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed catalog: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	for _, m := range demoMovies {
		_, err := tx.NamedExecContext(ctx, `INSERT INTO catalog.movies
			(id, title, tagline, synopsis, runtime_minutes, age_rating, genre, poster_hue)
			VALUES (:id, :title, :tagline, :synopsis, :runtime_minutes, :age_rating, :genre, :poster_hue)
			ON CONFLICT (id) DO NOTHING`, m)
		if err != nil {
			return fmt.Errorf("seed movie %s: %w", m.ID, err)
		}
	}
	screenIndex := 0
	theatres := demoTheatres
	if withLoadLab {
		theatres = append(slices.Clone(theatres), loadLab)
	}
	for _, t := range theatres {
		if err := seedTheatre(ctx, tx, t, &screenIndex, now); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed catalog: %w", err)
	}
	return nil
}

// loadLab is a theatre for load tests only (LOADTEST_CATALOG): one 300-seat screen for the hot
// show and four of 720 seats, so a minute at 1,000 bookings a second does not run out of seats.
var loadLab = demoTheatre{ID: "lab", Name: "Boxoffice Load Lab", City: "Leeds", Address: "1 Bench Row, LS1 4AP",
	Timezone: "Europe/London", Screens: []screenLayout{
		{Number: 1, Name: "Screen 1 · Hot show", Rows: 15, SeatsPerRow: 20, AisleAfter: []int{10}}, // 300
		{Number: 2, Name: "Screen 2", Rows: 24, SeatsPerRow: 30, AisleAfter: []int{10, 20}},        // 720
		{Number: 3, Name: "Screen 3", Rows: 24, SeatsPerRow: 30, AisleAfter: []int{10, 20}},
		{Number: 4, Name: "Screen 4", Rows: 24, SeatsPerRow: 30, AisleAfter: []int{10, 20}},
		{Number: 5, Name: "Screen 5", Rows: 24, SeatsPerRow: 30, AisleAfter: []int{10, 20}},
	}}

func seedTheatre(ctx context.Context, tx *sqlx.Tx, t demoTheatre, screenIndex *int, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO catalog.theatres (id, name, city, address, timezone)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`, t.ID, t.Name, t.City, t.Address, t.Timezone); err != nil {
		return fmt.Errorf("seed theatre %s: %w", t.ID, err)
	}
	loc, err := time.LoadLocation(t.Timezone)
	if err != nil {
		return fmt.Errorf("seed theatre %s: %w", t.ID, err)
	}
	for _, sc := range t.Screens {
		screenID := fmt.Sprintf("%s-%d", t.ID, sc.Number)
		if err := seedScreen(ctx, tx, t.ID, screenID, sc); err != nil {
			return err
		}
		if err := seedShows(ctx, tx, screenID, *screenIndex, now.In(loc)); err != nil {
			return err
		}
		*screenIndex++
	}
	return nil
}

func seedScreen(ctx context.Context, tx *sqlx.Tx, theatreID, screenID string, sc screenLayout) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO catalog.screens (id, theatre_id, number, name)
		VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`, screenID, theatreID, sc.Number, sc.Name); err != nil {
		return fmt.Errorf("seed screen %s: %w", screenID, err)
	}
	var labels, rows []string
	var numbers, positions []int64
	for r := 0; r < sc.Rows; r++ {
		row := string(rune('A' + r))
		position := 0
		for n := 1; n <= sc.SeatsPerRow; n++ {
			position++
			labels, rows = append(labels, fmt.Sprintf("%s%d", row, n)), append(rows, row)
			numbers, positions = append(numbers, int64(n)), append(positions, int64(position))
			if slices.Contains(sc.AisleAfter, n) {
				position++ // the aisle takes a column
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO catalog.seats (screen_id, label, row_label, number, position)
		SELECT $1, unnest($2::text[]), unnest($3::text[]), unnest($4::int[]), unnest($5::int[])
		ON CONFLICT DO NOTHING`,
		screenID, pq.Array(labels), pq.Array(rows), pq.Array(numbers), pq.Array(positions)); err != nil {
		return fmt.Errorf("seed seats of %s: %w", screenID, err)
	}
	return nil
}

// seedShows fills a screen's programme. Movies rotate across screens, slots and days, so each
// film plays in every city during the week.
func seedShows(ctx context.Context, tx *sqlx.Tx, screenID string, screenIndex int, localNow time.Time) error {
	today := time.Date(localNow.Year(), localNow.Month(), localNow.Day(), 0, 0, 0, 0, localNow.Location())
	var ids, movies []string
	var starts []time.Time
	var prices []int64
	for day := 0; day <= ScheduleDays; day++ {
		date := today.AddDate(0, 0, day)
		for slot, st := range demoShowtimes {
			start := time.Date(date.Year(), date.Month(), date.Day(), st.Hour, st.Minute, 0, 0, date.Location())
			movie := demoMovies[(screenIndex*3+slot+date.YearDay())%len(demoMovies)]
			ids = append(ids, fmt.Sprintf("%s-%s-%02d%02d", screenID, start.Format("20060102"), st.Hour, st.Minute))
			movies, starts, prices = append(movies, movie.ID), append(starts, start.UTC()), append(prices, st.PriceCents)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO catalog.shows (id, movie_id, screen_id, starts_at, price_cents, currency)
		SELECT unnest($1::text[]), unnest($2::text[]), $3, unnest($4::timestamptz[]), unnest($5::bigint[]), 'GBP'
		ON CONFLICT DO NOTHING`, pq.Array(ids), pq.Array(movies), screenID, pq.Array(starts), pq.Array(prices)); err != nil {
		return fmt.Errorf("seed shows of %s: %w", screenID, err)
	}
	return nil
}
