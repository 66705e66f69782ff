package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/db"
	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// toldProjection is a projection over a database of its own that counts what its streams were
// told.
type toldProjection struct {
	*Projection
	mu   sync.Mutex
	told map[string]int
	news []*StageNews // every stage told, in order
}

func newToldProjection(t *testing.T) *toldProjection {
	t.Helper()
	tp := &toldProjection{told: map[string]int{}}
	tp.Projection = NewProjection(dbtest.NewMigrated(t, nil), func(_ string, news *StageNews) {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		if news == nil {
			tp.told[""]++
			return
		}
		tp.told[news.BookingID()]++
		tp.news = append(tp.news, news)
	}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return tp
}

// describe is what a person would see of a booking: its status, reason, hold, ticket and
// stages.
func (tp *toldProjection) describe(t *testing.T, id string) string {
	t.Helper()
	b, err := tp.Booking(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return describeBooking(b)
}

// describeBooking is describe for a booking at hand, its stages as a page shows them.
func describeBooking(b BookingStatus) string {
	b.Stages = orderedStages(b.Stages)
	var stages []string
	for _, s := range b.Stages {
		stages = append(stages, s.Name+" "+s.At.UTC().Format(time.RFC3339Nano)+" "+s.Detail)
	}
	ticket := ""
	if b.Ticket != nil {
		ticket = b.Ticket.Code
	}
	hold := ""
	if b.HoldUntil != nil {
		hold = b.HoldUntil.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s %q hold=%s ticket=%s seats=%v stages=%q", b.Status, b.Reason, hold, ticket, b.Seats, stages)
}

func stageEvent(t *testing.T, eventType, bookingID string, payload any) kafka.Delivery {
	t.Helper()
	env, err := event.New(eventType, bookingID, payload, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Delivery{Envelope: env}
}

// handleOneByOne is what the consumer's careful path does with a batch.
func (tp *toldProjection) handleOneByOne(t *testing.T, batch []kafka.Delivery) {
	t.Helper()
	for _, d := range batch {
		var err error
		if d.Envelope.Type == event.TypeBookingRequested {
			var req event.BookingRequested
			if err := d.Envelope.Decode(&req); err != nil {
				t.Fatal(err)
			}
			err = tp.onRequested(context.Background(), d.Envelope, req)
		} else {
			change, decodeErr := stageChanges[d.Envelope.Type](d.Envelope)
			if decodeErr != nil {
				t.Fatal(decodeErr)
			}
			err = tp.advanceStages(context.Background(), []stageChange{change})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestProjectionBatchesStoreWhatOneByOneWould: requests and stages fetched together are stored
// in one statement per topic, and every booking ends as storing them one by one leaves it: a
// confirmation with its hold, a rejection with its reason, a payment read before its booking's
// confirmation, a failed payment and its SMS, a ticket, a request delivered twice. Every booking
// in a batch is told to its streams, on a replay too. A batch with a booking not read yet stores
// nothing and says to wait.
func TestProjectionBatchesStoreWhatOneByOneWould(t *testing.T) {
	ctx := context.Background()
	one, batched := newToldProjection(t), newToldProjection(t)

	ids := make([]string, 5)
	var requests []kafka.Delivery
	for i := range ids {
		ids[i] = uuid.NewString()
		requests = append(requests, stageEvent(t, event.TypeBookingRequested, ids[i], event.BookingRequested{
			ShowID: "ldn-1-20261127-1930", Seats: []string{fmt.Sprintf("C%d", i+1)}, CustomerName: "Ada", Phone: "+447700900123",
			Card: event.Card{Brand: "visa", Last4: "4242"}}))
	}
	requests = append(requests, requests[0]) // delivered twice
	details := event.BookingDetails{MovieTitle: "Orbital Decay", AmountCents: 1395, Currency: "GBP", Seats: []string{"C1"},
		Timezone: "Europe/London", PhoneMasked: "+44•••••••123"}
	hold := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	movieFound := []kafka.Delivery{
		stageEvent(t, event.TypeSeatsConfirmed, ids[0], event.SeatsConfirmed{Booking: details, HoldExpiresAt: hold}),
		stageEvent(t, event.TypeBookingRejected, ids[1], event.BookingRejected{Code: "seat_taken", Reason: "Seat C2 is taken."}),
		stageEvent(t, event.TypeSeatsConfirmed, ids[3], event.SeatsConfirmed{Booking: details, HoldExpiresAt: hold}),
		stageEvent(t, event.TypeSeatsConfirmed, ids[4], event.SeatsConfirmed{Booking: details, HoldExpiresAt: hold}),
	}
	payments := []kafka.Delivery{
		stageEvent(t, event.TypePaymentSucceeded, ids[0], event.PaymentSucceeded{Booking: details, CardBrand: "visa", CardLast4: "4242"}),
		stageEvent(t, event.TypePaymentSucceeded, ids[2], event.PaymentSucceeded{Booking: details, CardBrand: "visa", CardLast4: "4242"}),
		stageEvent(t, event.TypePaymentFailed, ids[3], event.PaymentFailed{Booking: details, Code: "card_declined", Reason: "Your card was declined."}),
	}
	notifications := []kafka.Delivery{
		stageEvent(t, event.TypeNotificationSent, ids[0], event.NotificationResult{Booking: details, Paid: true}),
		stageEvent(t, event.TypeNotificationSent, ids[3], event.NotificationResult{Booking: details, Paid: false}),
	}
	tickets := []kafka.Delivery{
		stageEvent(t, event.TypeTicketIssued, ids[0], event.TicketIssued{TicketID: "t-" + ids[0], Code: "BX-1", Seats: []string{"C1"}}),
	}
	batches := [][]kafka.Delivery{requests, movieFound, payments, notifications, tickets}

	for _, batch := range batches {
		one.handleOneByOne(t, batch)
	}
	if err := batched.onRequestedBatch(ctx, batches[0]); err != nil {
		t.Fatal(err)
	}
	for _, batch := range batches[1:] {
		if err := batched.onStagesBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if got, want := batched.describe(t, id), one.describe(t, id); got != want {
			t.Errorf("booking %s\n batch:      %s\n one by one: %s", id, got, want)
		}
	}
	if got := batched.describe(t, ids[0]); !strings.HasPrefix(got, StatusTicketed) || !strings.Contains(got, "hold=2026-11-27T19:00:00Z") {
		t.Errorf("the ticketed booking reads %s", got)
	}
	if got := batched.describe(t, ids[3]); !strings.HasPrefix(got, StatusFailed+` "Your card was declined."`) {
		t.Errorf("the declined booking reads %s", got)
	}
	told := func() string { return fmt.Sprint(batched.told) }
	before := told()

	// A replay stores nothing new, and the streams are told again.
	for _, batch := range batches[1:] {
		if err := batched.onStagesBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if got, want := batched.describe(t, id), one.describe(t, id); got != want {
			t.Errorf("booking %s after a replay\n batch:      %s\n one by one: %s", id, got, want)
		}
	}
	if told() == before {
		t.Error("the streams were not told of the replayed stages")
	}

	stranger := stageEvent(t, event.TypePaymentSucceeded, uuid.NewString(), event.PaymentSucceeded{Booking: details})
	fresh := newToldProjection(t)
	if err := fresh.onRequestedBatch(ctx, requests[2:3]); err != nil {
		t.Fatal(err)
	}
	err := fresh.onStagesBatch(ctx, []kafka.Delivery{payments[1], stranger})
	if !errors.Is(err, errBookingNotYetKnown) {
		t.Fatalf("a batch with a booking not read yet: %v; want to wait for it", err)
	}
	if got := fresh.describe(t, ids[2]); !strings.HasPrefix(got, StatusRequested) || strings.Contains(got, StatusPaid) {
		t.Errorf("the known booking of a refused batch reads %s; want nothing stored", got)
	}
}

// TestStreamsKnowFromTheNewsWhatAReadWouldGive: a stream reads its booking once and then keeps
// it from the news of each stage. Whenever it read (after any number of stages), and however
// much of the news it then hears again (news of stages its read already had, as when a read and
// a stage race), it must come to what a read at the end gives: stages, times, status, reason,
// hold and ticket, through a confirmation, a rejection, a payment read before its booking's
// confirmation, a failed payment and its SMS, and a ticket. A read older than the news merged
// in later (a slow connection's read) changes nothing, and nor does a replay.
func TestStreamsKnowFromTheNewsWhatAReadWouldGive(t *testing.T) {
	ctx := context.Background()
	tp := newToldProjection(t)
	ids := make([]string, 4)
	var requests []kafka.Delivery
	for i := range ids {
		ids[i] = uuid.NewString()
		requests = append(requests, stageEvent(t, event.TypeBookingRequested, ids[i], event.BookingRequested{
			ShowID: "ldn-1-20261127-1930", Seats: []string{fmt.Sprintf("D%d", i+1)}, CustomerName: "Ada", Phone: "+447700900123",
			Card: event.Card{Brand: "visa", Last4: "4242"}}))
	}
	if err := tp.onRequestedBatch(ctx, requests); err != nil {
		t.Fatal(err)
	}
	details := event.BookingDetails{MovieTitle: "Orbital Decay", AmountCents: 1395, Currency: "GBP", Seats: []string{"D1"},
		Timezone: "Europe/London", PhoneMasked: "+44•••••••123"}
	hold := time.Date(2026, 11, 27, 19, 0, 0, 123456789, time.UTC) // nanoseconds: PostgreSQL keeps microseconds
	stages := []kafka.Delivery{
		stageEvent(t, event.TypeSeatsConfirmed, ids[0], event.SeatsConfirmed{Booking: details, HoldExpiresAt: hold}),
		stageEvent(t, event.TypeBookingRejected, ids[1], event.BookingRejected{Code: "seat_taken", Reason: "Seat D2 is taken."}),
		stageEvent(t, event.TypePaymentSucceeded, ids[2], event.PaymentSucceeded{Booking: details, CardBrand: "visa", CardLast4: "4242"}),
		stageEvent(t, event.TypeSeatsConfirmed, ids[2], event.SeatsConfirmed{Booking: details, HoldExpiresAt: hold}),
		stageEvent(t, event.TypeSeatsConfirmed, ids[3], event.SeatsConfirmed{Booking: details, HoldExpiresAt: hold}),
		stageEvent(t, event.TypePaymentSucceeded, ids[0], event.PaymentSucceeded{Booking: details, CardBrand: "visa", CardLast4: "4242"}),
		stageEvent(t, event.TypeNotificationSent, ids[3], event.NotificationResult{Booking: details, Paid: false}),
		stageEvent(t, event.TypePaymentFailed, ids[3], event.PaymentFailed{Booking: details, Code: "card_declined", Reason: "Your card was declined."}),
		stageEvent(t, event.TypeNotificationSent, ids[0], event.NotificationResult{Booking: details, Paid: true}),
		stageEvent(t, event.TypeTicketIssued, ids[0], event.TicketIssued{TicketID: "t-" + ids[0], Code: "BX-1", Seats: []string{"D1"}}),
	}
	read := func() map[string]BookingStatus {
		out := map[string]BookingStatus{}
		for _, id := range ids {
			b, err := tp.bookingAsStored(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			out[id] = b
		}
		return out
	}
	reads := []map[string]BookingStatus{read()} // reads[k]: after k stages
	for _, d := range stages {
		if err := tp.onStagesBatch(ctx, []kafka.Delivery{d}); err != nil {
			t.Fatal(err)
		}
		reads = append(reads, read())
	}
	if len(tp.news) != len(stages) {
		t.Fatalf("%d stages stored, %d told", len(stages), len(tp.news))
	}
	want := map[string]string{}
	for _, id := range ids {
		want[id] = tp.describe(t, id)
	}
	if !strings.HasPrefix(want[ids[0]], StatusTicketed) || !strings.HasPrefix(want[ids[3]], StatusFailed) {
		t.Fatalf("the stored bookings are not what the test is about: %v", want)
	}
	for k := range reads {
		for j := 0; j <= k; j++ {
			for _, id := range ids {
				known := reads[k][id]
				for _, news := range tp.news[j:] {
					if news.BookingID() == id {
						news.Apply(&known)
					}
				}
				if got := describeBooking(known); got != want[id] {
					t.Errorf("read after %d stages, news from stage %d on: booking %d\n knows: %s\n reads: %s", k, j, slices.Index(ids, id), got, want[id])
				}
				if got := describeBooking(mergeBookings(known, reads[j][id])); got != want[id] {
					t.Errorf("an older read (after %d stages) merged in: booking %d\n knows: %s\n reads: %s", j, slices.Index(ids, id), got, want[id])
				}
			}
		}
	}

	// A replay: the news comes again, stores nothing, and changes nothing a stream knows.
	told := len(tp.news)
	if err := tp.onStagesBatch(ctx, stages[:1]); err != nil {
		t.Fatal(err)
	}
	known := reads[len(stages)][ids[0]]
	if len(tp.news) != told+1 || tp.news[told].Apply(&known) || describeBooking(known) != want[ids[0]] {
		t.Errorf("a replayed stage: told %d times (want once more), and the booking then reads %s", len(tp.news)-told, describeBooking(known))
	}
}

// TestStagesFindTheirBookingsByIndexAsTheTableGrows: the stage statement is prepared while
// web.bookings is new and nearly empty, and must go on finding each booking by its key as the
// table grows, not read the whole table on every stage (which a plan made for an empty table
// does, and keeps doing: a stage then costs more with every booking ever sold).
func TestStagesFindTheirBookingsByIndexAsTheTableGrows(t *testing.T) {
	ctx := context.Background()
	url := dbtest.NewURL(t)
	conn, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, conn, nil); err != nil {
		t.Fatal(err)
	}
	p := NewProjection(conn, func(string, *StageNews) {}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	book := func(n int) []string {
		ids := make([]string, n)
		envs := make([]event.Envelope, n)
		reqs := make([]event.BookingRequested, n)
		for i := range ids {
			ids[i] = uuid.NewString()
			envs[i] = stageEvent(t, event.TypeBookingRequested, ids[i], nil).Envelope
			reqs[i] = event.BookingRequested{ShowID: "ldn-1-20261127-1930", Seats: []string{"A1"}, CustomerName: "Ada"}
		}
		if err := p.recordRequested(ctx, envs, reqs); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	reject := func(ids []string, together int) {
		for batch := range slices.Chunk(ids, together) {
			var changes []stageChange
			for _, id := range batch {
				change, err := stageChanges[event.TypeBookingRejected](stageEvent(t, event.TypeBookingRejected, id,
					event.BookingRejected{Code: "seat_taken", Reason: "Seat A1 is taken."}).Envelope)
				if err != nil {
					t.Fatal(err)
				}
				changes = append(changes, change)
			}
			if err := p.advanceStages(ctx, changes); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One connection, so the statement is prepared, and run often enough (in batches, as under
	// load) for PostgreSQL to settle on a plan of its own, while the table holds a few bookings.
	conn.SetMaxOpenConns(1)
	first := book(80)
	reject(first, 8)
	later := book(2000)
	seqScans := func() int64 {
		t.Helper()
		// The one connection reports what it scanned once it is idle after this statement.
		if _, err := conn.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		var n int64
		err := conn.GetContext(ctx, &n, `SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables WHERE relid = 'web.bookings'::regclass`)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := seqScans()
	reject(later[:200], 1)
	if scans := seqScans() - before; scans > 10 {
		t.Errorf("200 stages over %d bookings read web.bookings whole %d times; want them found by key", len(first)+len(later), scans)
	}
}

// TestSeatMapsHearOnlyOfSeatsThatChangeState: a live seat map asks for the seats whose bookings
// changed after the version it was drawn at. A booking's seats are held from its request until
// it is ticketed (sold) or rejected (free): its confirmation, payment and text change nothing a
// seat map shows, so they take no new seat version, and its row is updated in place (HOT, no new
// index entries: the point of migration 00015), which this checks in PostgreSQL's counters.
func TestSeatMapsHearOnlyOfSeatsThatChangeState(t *testing.T) {
	ctx := context.Background()
	tp := newToldProjection(t)
	const show = "ldn-1-20261127-1930"
	sold, freed := uuid.NewString(), uuid.NewString()
	var requests []kafka.Delivery
	for i, id := range []string{sold, freed} {
		requests = append(requests, stageEvent(t, event.TypeBookingRequested, id, event.BookingRequested{
			ShowID: show, Seats: []string{fmt.Sprintf("D%d", i+1)}, CustomerName: "Ada", Phone: "+447700900123",
			Card: event.Card{Brand: "visa", Last4: "4242"}}))
	}
	tp.handleOneByOne(t, requests)
	drawn, err := tp.ShowSeats(ctx, show)
	if err != nil {
		t.Fatal(err)
	}
	if drawn.State("D1") != SeatHeld || drawn.State("D2") != SeatHeld {
		t.Fatalf("requested seats are %s and %s, want held", drawn.State("D1"), drawn.State("D2"))
	}
	changedSince := func(version int64) []string {
		t.Helper()
		seats, err := tp.SeatsChangedSince(ctx, show, version, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(seats)
		return seats
	}
	hotUpdates := func() int64 {
		t.Helper()
		if _, err := tp.db.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := tp.db.GetContext(ctx, &n, `SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'web.bookings'::regclass`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	tp.db.SetMaxOpenConns(1) // so the connection that updated is the one that reports its counts
	hotBefore := hotUpdates()

	details := event.BookingDetails{MovieTitle: "Orbital Decay", AmountCents: 1395, Currency: "GBP", Seats: []string{"D1"},
		Timezone: "Europe/London", PhoneMasked: "+44•••••••123"}
	tp.handleOneByOne(t, []kafka.Delivery{
		stageEvent(t, event.TypeSeatsConfirmed, sold, event.SeatsConfirmed{Booking: details, HoldExpiresAt: time.Now().Add(10 * time.Minute)}),
		stageEvent(t, event.TypePaymentSucceeded, sold, event.PaymentSucceeded{Booking: details, CardBrand: "visa", CardLast4: "4242"}),
		stageEvent(t, event.TypeNotificationSent, sold, event.NotificationResult{Booking: details, Paid: true}),
	})
	if seats := changedSince(drawn.Version); len(seats) != 0 {
		t.Errorf("after a confirmation, a payment and a text, a seat map drawn before them is sent %v; want nothing (the seats stay held)", seats)
	}
	if got := hotUpdates() - hotBefore; got != 3 {
		t.Errorf("%d of the 3 updates that change no seat were made in place; want all 3", got)
	}

	tp.handleOneByOne(t, []kafka.Delivery{
		stageEvent(t, event.TypeTicketIssued, sold, event.TicketIssued{TicketID: "t-" + sold, Code: "BX-1", Seats: []string{"D1"}}),
		stageEvent(t, event.TypeBookingRejected, freed, event.BookingRejected{Code: "seat_taken", Reason: "Seat D2 is taken."}),
	})
	if seats := changedSince(drawn.Version); !slices.Equal(seats, []string{"D1", "D2"}) {
		t.Errorf("after a ticket and a rejection, a seat map drawn before them is sent %v; want [D1 D2]", seats)
	}
	now, err := tp.ShowSeats(ctx, show)
	if err != nil {
		t.Fatal(err)
	}
	if now.State("D1") != SeatSold || now.State("D2") != SeatFree || now.Version <= drawn.Version {
		t.Errorf("seat map after: D1 %s, D2 %s, version %d (drawn at %d); want sold, free and a newer version",
			now.State("D1"), now.State("D2"), now.Version, drawn.Version)
	}
	if seats := changedSince(now.Version); len(seats) != 0 {
		t.Errorf("a seat map drawn after every change is sent %v; want nothing", seats)
	}
}
