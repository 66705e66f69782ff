package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestABookingReadsNoTableWhole: the hot statements are prepared once per connection, usually
// while the tables are nearly empty, and PostgreSQL plans them then, generically, for good. Such
// plans have read tables whole on every call, cheap at first and slower with every booking of the
// evening: the web's stage statement (3 scans of web.bookings a stage), the notification
// service's sent-text look-up (every message ever sent, for each SMS; its own test), and the
// booking service's seat check (a screen's every seat for each request: this test found it).
// The test books on fresh tables, grows every table by a few hundred bookings, then counts the
// rows PostgreSQL read from each table for a few more: a table read whole shows up as a hundred
// rows a booking or more, where a booking needs a few from each.
func TestABookingReadsNoTableWhole(t *testing.T) {
	c := startAll(t)
	shows := c.futureShows(8) // 480 seats // 60 seats each: rows A to F, seats 1 to 10
	var seats []struct{ show, seat string }
	for _, s := range shows {
		for _, row := range "ABCDEF" {
			for n := 1; n <= 10; n++ {
				seats = append(seats, struct{ show, seat string }{s.ID, fmt.Sprintf("%c%d", row, n)})
			}
		}
	}
	next := 0
	// burst books n seats, eight at a time, and waits for every booking to end.
	burst := func(n int) {
		t.Helper()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ids, refused []string
		work := make(chan struct{ show, seat string })
		for range 8 {
			wg.Go(func() {
				for s := range work {
					status, resp := c.book(request(s.show, []string{s.seat}, cardApproves))
					mu.Lock()
					if status == http.StatusAccepted {
						ids = append(ids, resp.BookingID)
					} else {
						refused = append(refused, fmt.Sprintf("%d %+v", status, resp))
					}
					mu.Unlock()
				}
			})
		}
		for range n {
			work <- seats[next]
			next++
		}
		close(work)
		wg.Wait()
		if len(refused) > 0 {
			t.Fatalf("%d of %d bookings refused, e.g. %s", len(refused), n, refused[0])
		}
		for _, id := range ids {
			c.waitFinal(id)
		}
	}
	// A first burst on near-empty tables: the pools open their connections, and each prepares
	// and plans its statements, as when a process starts on a new day's tables. The growth
	// after it reuses those connections.
	const warm, grown = 40, 400
	burst(warm)
	burst(grown)

	// Each connection reports what it read when idle, at most every ten seconds (PostgreSQL
	// 15): the counts are taken once every connection has reported.
	const reported = 11 * time.Second
	time.Sleep(reported)
	before := c.rowsRead()
	const measured = 20
	for range measured {
		s := seats[next]
		next++
		c.waitFinal(c.mustBook(s.show, []string{s.seat}, cardApproves).BookingID)
	}
	time.Sleep(reported)
	after := c.rowsRead()

	var whole []string
	for table, n := range after {
		if perBooking := float64(n-before[table]) / measured; perBooking > 50 {
			whole = append(whole, fmt.Sprintf("%s: %.0f rows a booking", table, perBooking))
		}
	}
	sort.Strings(whole)
	if len(whole) > 0 {
		t.Errorf("with %d bookings made, %d more read tables as if whole:\n%s", warm+grown, measured, strings.Join(whole, "\n"))
	}
}

// rowsRead is how many rows PostgreSQL has read from each table, by scans and through indexes.
func (c *cluster) rowsRead() map[string]int64 {
	c.t.Helper()
	var rows []struct {
		Table string `db:"name"`
		Read  int64  `db:"read"`
	}
	if err := c.db().Select(&rows, `SELECT schemaname || '.' || relname AS name,
		coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS read FROM pg_stat_user_tables`); err != nil {
		c.t.Fatal(err)
	}
	read := make(map[string]int64, len(rows))
	for _, r := range rows {
		read[r.Table] = r.Read
	}
	return read
}
