package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/web"
)

// TestABookingReadsNoTableWhole: the hot statements are prepared once per connection, usually
// while the tables are nearly empty, and PostgreSQL plans them then, generically, until the
// tables' statistics change. Such plans have read tables whole on every call, cheap at first and
// slower with every booking of the evening: the web's stage statement (3 scans of web.bookings a
// stage), the notification service's sent-text look-up (every message ever sent, for each SMS;
// its own test), the booking service's seat check (a screen's every seat, 60 to 192, for each
// request: this test found it).
//
// The test books on fresh tables, grows every table by 400 bookings, then counts the rows
// PostgreSQL read from each table for 20 more booked one after another (each event alone), then
// for 40 sent together (batches): a table read whole shows up as a hundred rows a booking
// or more, where a booking needs a few from each (web.bookings the most, about 20).
func TestABookingReadsNoTableWhole(t *testing.T) {
	// Lone events take the batch path too; the one-by-one path (what a refused batch takes) is
	// measured the same way with batches turned off.
	t.Run("batch handlers", func(t *testing.T) { readsNoTableWhole(t, nil) })
	t.Run("one by one", func(t *testing.T) { readsNoTableWhole(t, map[string]string{"CONSUMER_ONE_BY_ONE": "true"}) })
}

func readsNoTableWhole(t *testing.T, env map[string]string) {
	c := newCluster(t)
	c.startWith(TargetAll, env)
	shows := c.futureShows(9) // rows A to F, seats 1 to 10 of each: 540 seats for 500 bookings
	var seats []struct{ show, seat string }
	for _, s := range shows {
		for _, row := range "ABCDEF" {
			for n := 1; n <= 10; n++ {
				seats = append(seats, struct{ show, seat string }{s.ID, fmt.Sprintf("%c%d", row, n)})
			}
		}
	}
	next := 0
	// burst books n seats, eight at a time, and returns the bookings.
	burst := func(n int) []string {
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
		return ids
	}
	waitAll := func(ids []string) {
		t.Helper()
		for _, id := range ids {
			c.waitFinal(id)
		}
	}
	// A first burst on near-empty tables: the pools open their connections, and each prepares
	// and plans its statements, as when a process starts on a new day's tables. The growth
	// after it reuses those connections.
	const warm, grown = 40, 400
	waitAll(burst(warm))
	waitAll(burst(grown))

	// A connection reports what it read at most once a second while busy and within ten seconds
	// once idle (PostgreSQL 15): the counts are taken after every connection has had that time.
	const reported = 11 * time.Second
	key, err := web.CapabilityKey(context.Background(), c.db())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(reported)
	before := c.rowsRead()
	// Measured alone and in a burst, so lone events and batches both count. The
	// test's own status reads are kept few (each reads web.bookings): a lone booking is looked at
	// every 100 ms, the burst's once when they are likely done, then every half second.
	ticketed := func(id string) bool {
		var st apiStatus
		c.getJSON("/api/bookings/"+id+"?token="+web.BookingToken(key, id), &st)
		return st.Status == "ticketed"
	}
	// First alone, one after another.
	const alone = 20
	for range alone {
		s := seats[next]
		next++
		id := c.mustBook(s.show, []string{s.seat}, cardApproves).BookingID
		for deadline := time.Now().Add(waitForOutcome); !ticketed(id); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("booking %s not ticketed after %s", id, waitForOutcome)
			}
		}
	}
	time.Sleep(reported)
	afterAlone := c.rowsRead()
	const together = 40
	pending := burst(together)
	time.Sleep(2 * time.Second)
	deadline := time.Now().Add(waitForOutcome)
	for len(pending) > 0 && time.Now().Before(deadline) {
		var still []string
		for _, id := range pending {
			if !ticketed(id) {
				still = append(still, id)
			}
		}
		if pending = still; len(pending) > 0 {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if len(pending) > 0 {
		t.Fatalf("%d of %d bookings not ticketed after %s", len(pending), together, waitForOutcome)
	}
	time.Sleep(reported)
	after := c.rowsRead()

	var whole []string
	judge := func(how string, bookings int, from, to map[string]int64) {
		for table, n := range to {
			if perBooking := float64(n-from[table]) / float64(bookings); perBooking > 50 {
				whole = append(whole, fmt.Sprintf("%s, booked %s: %.0f rows a booking", table, how, perBooking))
			}
		}
	}
	// The two runs took the paths they are named for: the consumer logs an event handled in a
	// batch with the batch's size.
	batched := 0
	for line := range strings.Lines(c.web.logs.String()) {
		if strings.Contains(line, `"msg":"event handled"`) && strings.Contains(line, `"batch":`) {
			batched++
		}
	}
	if oneByOne := env["CONSUMER_ONE_BY_ONE"] == "true"; oneByOne != (batched == 0) {
		t.Fatalf("CONSUMER_ONE_BY_ONE=%v, yet %d events were logged as handled in a batch", oneByOne, batched)
	}
	judge("alone", alone, before, afterAlone)
	judge("together", together, afterAlone, after)
	sort.Strings(whole)
	if len(whole) > 0 {
		t.Errorf("with %d bookings made, the next ones read tables as if whole:\n%s", warm+grown, strings.Join(whole, "\n"))
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
