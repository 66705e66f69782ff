package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/outbox"
)

// TestBookPressesArrivingTogetherAreRecordedTogetherOnce: Book presses that arrive while others
// are being stored are stored in one statement, and each is recorded exactly as alone: every
// booking once with its requested stage and one booking-movie event; a request sent twice with
// its idempotency key (a double click) records one booking and tells both presses its id; a key
// reused for another request records one and refuses the other.
func TestBookPressesArrivingTogetherAreRecordedTogetherOnce(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := NewProjection(conn, func(string, string) {}, outbox.NewRelay(conn, OutboxTable, nil, log), log)

	// Hold the first statements until every press has queued, so the rest go together.
	const alone, doubleClicks, reused = 30, 10, 5
	total := alone + 2*doubleClicks + 2*reused
	gate := make(chan struct{})
	var taken atomic.Int64
	var mu sync.Mutex
	var batchSizes []int
	store, single := p.recorder.store, p.recorder.single
	p.recorder.store = func(batch []*recording) ([]bool, error) {
		taken.Add(int64(len(batch)))
		<-gate
		mu.Lock()
		batchSizes = append(batchSizes, len(batch))
		mu.Unlock()
		return store(batch)
	}
	p.recorder.single = func(rec *recording) (bool, error) {
		taken.Add(1)
		<-gate
		return single(rec)
	}

	type press struct {
		key, hash string
		seat      string
	}
	var presses []press
	for i := range alone {
		presses = append(presses, press{seat: fmt.Sprintf("A%d", i+1)})
	}
	for i := range doubleClicks {
		key := uuid.NewString()
		presses = append(presses, press{key, "same", fmt.Sprintf("B%d", i+1)}, press{key, "same", fmt.Sprintf("B%d", i+1)})
	}
	for i := range reused {
		key := uuid.NewString()
		presses = append(presses, press{key, "first", fmt.Sprintf("C%d", i+1)}, press{key, "other", fmt.Sprintf("D%d", i+1)})
	}
	type result struct {
		id, existing string
		err          error
	}
	results := make([]result, total)
	var wg sync.WaitGroup
	for i, pr := range presses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := event.BookingRequested{ShowID: "ldn-1-20261127-1930", Seats: []string{pr.seat}, CustomerName: "Ada",
				Phone: "+447700900123", Card: event.Card{Brand: "visa", Last4: "4242"}}
			env, err := event.New(event.TypeBookingRequested, uuid.NewString(), req, time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			var claim *RequestClaim
			if pr.key != "" {
				claim = &RequestClaim{Key: pr.key, Hash: pr.hash}
			}
			existing, err := p.Record(context.Background(), env, req, "+44•••••••123", claim, true)
			results[i] = result{env.BookingID, existing, err}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		p.recorder.mu.Lock()
		queued := len(p.recorder.pending) + int(taken.Load())
		p.recorder.mu.Unlock()
		if queued == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d presses queued", queued, total)
		}
	}
	close(gate)
	wg.Wait()

	recorded := map[string]bool{}
	for i, r := range results {
		switch {
		case r.err == nil && r.existing == "":
			recorded[r.id] = true
		case i >= alone+2*doubleClicks && errors.Is(r.err, errKeyReused):
		case r.err != nil:
			t.Errorf("press %d: %v", i, r.err)
		}
	}
	for i := alone; i < alone+2*doubleClicks; i += 2 {
		a, b := results[i], results[i+1]
		first := a.id
		if a.existing != "" {
			first = b.id
		}
		if (a.existing == "") == (b.existing == "") || (a.existing != first && b.existing != first) {
			t.Errorf("double click %d: %+v and %+v; want one booking, its id told to the second press", i, a, b)
		}
	}
	for i := alone + 2*doubleClicks; i < total; i += 2 {
		if a, b := results[i], results[i+1]; errors.Is(a.err, errKeyReused) == errors.Is(b.err, errKeyReused) {
			t.Errorf("reused key %d: %v and %v; want one recorded and one refused", i, a.err, b.err)
		}
	}
	if want := alone + doubleClicks + reused; len(recorded) != want {
		t.Errorf("%d bookings recorded, want %d", len(recorded), want)
	}
	var counts struct {
		Bookings int `db:"bookings"`
		Stages   int `db:"stages"`
		Events   int `db:"events"`
	}
	if err := conn.Get(&counts, `SELECT (SELECT count(*) FROM web.bookings) AS bookings,
		(SELECT count(*) FROM web.booking_stages WHERE name = 'requested') AS stages,
		(SELECT count(*) FROM web.outbox WHERE key = 'ldn-1-20261127-1930') AS events`); err != nil {
		t.Fatal(err)
	}
	if counts.Bookings != len(recorded) || counts.Stages != len(recorded) || counts.Events != len(recorded) {
		t.Errorf("stored %+v; want %d of each", counts, len(recorded))
	}
	mu.Lock()
	defer mu.Unlock()
	largest := 0
	for _, n := range batchSizes {
		largest = max(largest, n)
	}
	if largest < total/2 {
		t.Errorf("batches of %v: the presses that queued together were not stored together", batchSizes)
	}
}
