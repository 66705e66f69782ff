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
	"github.com/boxoffice/boxoffice/services/kafka"
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
	p := NewProjection(conn, func(string, *StageNews) {}, outbox.NewRelay(conn, OutboxTable, nil, log), log)

	// Hold the first statements until every press has queued, so the rest go together.
	const alone, doubleClicks, reused = 30, 10, 5
	total := alone + 2*doubleClicks + 2*reused
	gate := make(chan struct{})
	var taken atomic.Int64
	var mu sync.Mutex
	var batchSizes []int
	store, single := p.recorder.store, p.recorder.single
	p.recorder.store = func(ctx context.Context, batch []*recording) ([]bool, error) {
		taken.Add(int64(len(batch)))
		<-gate
		mu.Lock()
		batchSizes = append(batchSizes, len(batch))
		mu.Unlock()
		return store(ctx, batch)
	}
	p.recorder.single = func(ctx context.Context, rec *recording) (bool, error) {
		taken.Add(1)
		<-gate
		return single(ctx, rec)
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

// TestAPressIsStoredIfAndOnlyIfItsCallerIsToldSo: a caller that gives up while its press waits
// in the queue is told so and the press is never stored; one that gives up after its statement
// started is told what the statement did.
func TestAPressIsStoredIfAndOnlyIfItsCallerIsToldSo(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := NewProjection(conn, func(string, *StageNews) {}, outbox.NewRelay(conn, OutboxTable, nil, log), log)
	gate := make(chan struct{})
	started := make(chan struct{}, recordersAtOnce)
	single := p.recorder.single
	p.recorder.single = func(ctx context.Context, rec *recording) (bool, error) {
		started <- struct{}{}
		<-gate
		return single(ctx, rec)
	}
	press := func(ctx context.Context, seat string) (string, error) {
		req := event.BookingRequested{ShowID: "ldn-1-20261127-1930", Seats: []string{seat}, CustomerName: "Ada",
			Phone: "+447700900123", Card: event.Card{Brand: "visa", Last4: "4242"}}
		env, err := event.New(event.TypeBookingRequested, uuid.NewString(), req, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Record(ctx, env, req, "+44•••••••123", nil, true)
		return env.BookingID, err
	}
	stored := func(id string) bool {
		var n int
		if err := conn.Get(&n, `SELECT (SELECT count(*) FROM web.bookings WHERE id = $1::uuid) +
			(SELECT count(*) FROM web.outbox WHERE envelope->>'booking_id' = $1::text)`, id); err != nil {
			t.Fatal(err)
		}
		return n == 2
	}

	// Both statements in flight, held at the gate; their callers give up meanwhile.
	type result struct {
		id  string
		err error
	}
	inFlight := make(chan result, recordersAtOnce)
	var cancels []context.CancelFunc
	for i := range recordersAtOnce {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		go func() {
			id, err := press(ctx, fmt.Sprintf("A%d", i+1))
			inFlight <- result{id, err}
		}()
		<-started
	}
	// A third press waits in the queue; its caller gives up before any statement takes it.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	queuedID, err := press(ctx, "B1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the press that waited past its caller's deadline: %v; want the deadline", err)
	}
	for _, cancel := range cancels {
		cancel()
	}
	close(gate)
	for range recordersAtOnce {
		r := <-inFlight
		if r.err != nil || !stored(r.id) {
			t.Errorf("a press whose statement had started when its caller gave up: %v, stored %v; want it stored and told so", r.err, stored(r.id))
		}
	}
	if stored(queuedID) {
		t.Error("the press whose caller gave up in the queue was stored anyway")
	}
	if _, err := press(context.Background(), "C1"); err != nil {
		t.Errorf("a press after all that: %v", err)
	}
}

// TestABookingRecordedHereIsNotRecordedAgainWhenReadBack: the web reads booking-movie back to
// record the bookings other replicas and replays bring. One it recorded itself at the Book press
// is stored already and its show's seat maps were told then: reading it back costs no statement
// and tells the maps nothing twice. A booking from elsewhere is still recorded, and told.
func TestABookingRecordedHereIsNotRecordedAgainWhenReadBack(t *testing.T) {
	for _, path := range []string{"batch", "one by one", "a refused batch, then one by one"} {
		t.Run(path, func(t *testing.T) {
			ctx := context.Background()
			conn := dbtest.NewMigrated(t, nil)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			var mapsTold atomic.Int64
			p := NewProjection(conn, func(_ string, news *StageNews) {
				if news == nil {
					mapsTold.Add(1)
				}
			}, outbox.NewRelay(conn, OutboxTable, nil, log), log)
			booking := func(seat string) (event.Envelope, event.BookingRequested) {
				req := event.BookingRequested{ShowID: "ldn-1-20261127-1930", Seats: []string{seat}, CustomerName: "Ada",
					Phone: "+447700900123", Card: event.Card{Brand: "visa", Last4: "4242"}}
				env, err := event.New(event.TypeBookingRequested, uuid.NewString(), req, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				return env, req
			}
			here, hereReq := booking("A1")
			if _, err := p.Record(ctx, here, hereReq, "+44•••••••123", nil, true); err != nil {
				t.Fatal(err)
			}
			elsewhere, elsewhereReq := booking("A2")
			if path == "a refused batch, then one by one" {
				// Another type of event in the batch: refused, and the consumer goes one by one.
				other, err := event.New(event.TypeSeatsConfirmed, here.BookingID, event.SeatsConfirmed{}, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if err := p.onRequestedBatch(ctx, []kafka.Delivery{{Envelope: here}, {Envelope: elsewhere}, {Envelope: other}}); err == nil {
					t.Fatal("a batch with another type of event was taken")
				}
			}
			if path == "batch" {
				if err := p.onRequestedBatch(ctx, []kafka.Delivery{{Envelope: here}, {Envelope: elsewhere}}); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, d := range []struct {
					env event.Envelope
					req event.BookingRequested
				}{{here, hereReq}, {elsewhere, elsewhereReq}} {
					if err := p.onRequested(ctx, d.env, d.req); err != nil {
						t.Fatal(err)
					}
				}
			}
			if n := mapsTold.Load(); n != 2 {
				t.Errorf("seat maps were told %d times of two new bookings; want once each", n)
			}
			for _, id := range []string{here.BookingID, elsewhere.BookingID} {
				if b, err := p.Booking(ctx, id); err != nil || b.Status != StatusRequested || len(b.Stages) != 1 {
					t.Errorf("booking %s: %+v, %v; want it requested, with its first stage", id, b, err)
				}
			}
		})
	}
}
