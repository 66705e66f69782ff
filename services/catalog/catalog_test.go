package catalog_test

import (
	"context"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/catalog"
)

// TestSeedBuildsABelievableCinema checks the demo chain is what the issue promises a visitor:
// at least 6 films, 3 cities, real seat layouts, a week of shows; and that seeding twice (every
// start-up does) changes nothing.
func TestSeedBuildsABelievableCinema(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for range 2 {
		if err := catalog.Seed(ctx, conn, now, false); err != nil {
			t.Fatal(err)
		}
	}
	store := catalog.NewStore(conn)

	movies, err := store.Movies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(movies) < 6 {
		t.Fatalf("%d movies, want at least 6", len(movies))
	}
	for _, m := range movies {
		if m.Synopsis == "" || m.RuntimeMinutes == 0 || m.AgeRating == "" || m.Genre == "" {
			t.Errorf("movie %q lacks a synopsis, runtime, rating or genre: %+v", m.Title, m)
		}
	}

	var cities int
	if err := conn.Get(&cities, `SELECT count(DISTINCT city) FROM catalog.theatres`); err != nil || cities < 3 {
		t.Fatalf("%d cities (err %v), want 3", cities, err)
	}

	counts, err := store.SeatCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for screen, n := range counts {
		if n < 60 || n > 200 {
			t.Errorf("screen %s has %d seats, want 60-200", screen, n)
		}
	}
	seats, err := store.Seats(ctx, "ldn-2")
	if err != nil {
		t.Fatal(err)
	}
	// Screen 2 in London: 12 seats a row, aisle after seat 6, so seat 7 sits in column 8.
	for _, s := range seats {
		if s.Label == "A7" && s.Position != 8 {
			t.Errorf("A7 in column %d, want 8 (after the aisle)", s.Position)
		}
	}

	for _, m := range movies {
		shows, err := store.UpcomingShows(ctx, m.ID, now, now.AddDate(0, 0, catalog.ScheduleDays))
		if err != nil {
			t.Fatal(err)
		}
		if len(shows) == 0 {
			t.Errorf("%s has no shows this week", m.Title)
		}
	}
	var total, distinctStarts int
	if err := conn.Get(&total, `SELECT count(*) FROM catalog.shows`); err != nil {
		t.Fatal(err)
	}
	if err := conn.Get(&distinctStarts, `SELECT count(DISTINCT (starts_at AT TIME ZONE 'Europe/London')::time) FROM catalog.shows`); err != nil {
		t.Fatal(err)
	}
	if want := 7 * (catalog.ScheduleDays + 1) * 4; total != want {
		t.Errorf("%d shows, want %d (7 screens, %d days, 4 a day)", total, want, catalog.ScheduleDays+1)
	}
	if distinctStarts != 4 {
		t.Errorf("shows start at %d different local times, want the 4 showtimes", distinctStarts)
	}
	show, err := store.Show(ctx, "ldn-1-20261125-1930")
	if err != nil {
		t.Fatal(err)
	}
	if got := show.LocalStart().Format("15:04 MST"); got != "19:30 GMT" {
		t.Errorf("the 19:30 show starts at %s local time", got)
	}
}
