package booking_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
)

// queued lists the outcomes the service queued for publication, oldest first.
func queued(t *testing.T, conn *sqlx.DB) []kafka.Message {
	t.Helper()
	msgs, err := outbox.Pending(context.Background(), conn, booking.OutboxTable)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const show = "ldn-1-20261125-1930" // 19:30 London on the seeded day

// newService returns the booking service at now. Its relay is never run: tests read what it
// queued straight from the outbox.
func newService(t testing.TB) (*booking.Service, *sqlx.DB) {
	t.Helper()
	conn := dbtest.NewMigrated(t, func(ctx context.Context, d *sqlx.DB) error { return catalog.Seed(ctx, d, now, false) })
	return booking.NewService(conn, nil, 0, booking.SeatLimits{}, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil))), conn
}

func requested(t *testing.T, seats ...string) (event.Envelope, event.BookingRequested) {
	t.Helper()
	req := event.BookingRequested{ShowID: show, Seats: seats, CustomerName: "Ada", Phone: "+447700900123",
		Card: event.Card{Brand: "visa", Last4: "4242", Token: "tok_sandbox_4242_x"}}
	env, err := event.New(event.TypeBookingRequested, uuid.NewString(), req, now)
	if err != nil {
		t.Fatal(err)
	}
	return env, req
}

// TestRedeliveredRequestChangesNothing: at-least-once delivery must neither announce a booking
// twice nor turn it into a "seat taken" rejection of itself.
func TestRedeliveredRequestChangesNothing(t *testing.T) {
	svc, conn := newService(t)
	env, req := requested(t, "A1", "A2")
	for range 3 {
		if err := svc.HandleRequested(context.Background(), env, req); err != nil {
			t.Fatal(err)
		}
	}
	msgs := queued(t, conn)
	if len(msgs) != 1 || msgs[0].Envelope.Type != event.TypeSeatsConfirmed || msgs[0].Topic != event.TopicMovieFound || msgs[0].Key != env.BookingID {
		t.Fatalf("queued %v, want one confirmation on movie-found keyed by booking", msgs)
	}
	var confirmed event.SeatsConfirmed
	if err := msgs[0].Envelope.Decode(&confirmed); err != nil {
		t.Fatal(err)
	}
	b := confirmed.Booking
	if b.MovieTitle == "" || b.TheatreName != "Boxoffice Bankside" || b.TheatreLocation == "" || b.ScreenNumber != 1 ||
		b.AmountCents != 2*1395 || b.PhoneMasked != "•••••••••123" || strings.Contains(string(msgs[0].Envelope.Payload), "7700900123") {
		t.Errorf("confirmation lacks what downstream needs, or leaks the phone: %+v", b)
	}
	var held int
	if err := conn.Get(&held, `SELECT count(*) FROM booking.held_seats WHERE show_id = $1`, show); err != nil || held != 2 {
		t.Errorf("%d seats held (err %v), want 2", held, err)
	}
}

// TestFailedPaymentReleasesTheSeats, once, and a replay of the failure changes nothing.
func TestFailedPaymentReleasesTheSeats(t *testing.T) {
	svc, conn := newService(t)
	env, req := requested(t, "B1")
	ctx := context.Background()
	if err := svc.HandleRequested(ctx, env, req); err != nil {
		t.Fatal(err)
	}
	failed, _ := event.New(event.TypePaymentFailed, env.BookingID, event.PaymentFailed{Code: "card_declined", Reason: "Your card was declined."}, now)
	for range 2 {
		if err := svc.HandlePaymentFailed(ctx, failed, event.PaymentFailed{Code: "card_declined", Reason: "Your card was declined."}); err != nil {
			t.Fatal(err)
		}
	}
	var status string
	if err := conn.Get(&status, `SELECT status FROM booking.bookings WHERE id = $1`, env.BookingID); err != nil || status != "failed" {
		t.Errorf("status %q (err %v), want failed", status, err)
	}
	// The next buyer gets B1.
	env2, req2 := requested(t, "B1")
	if err := svc.HandleRequested(ctx, env2, req2); err != nil {
		t.Fatal(err)
	}
	msgs := queued(t, conn)
	if last := msgs[len(msgs)-1]; last.Key != env2.BookingID || last.Envelope.Type != event.TypeSeatsConfirmed {
		t.Errorf("B1 after a failed payment: %s for %s, want the second booking confirmed", last.Envelope.Type, last.Key)
	}
}

// TestShowThatStartedIsRejected: the 13:15 show, asked for at 14:00, cannot be booked.
func TestShowThatStartedIsRejected(t *testing.T) {
	_, conn := newService(t)
	at14 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	late := booking.NewService(conn, nil, 0, booking.SeatLimits{}, func() time.Time { return at14 }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	env, req := requested(t, "A1")
	req.ShowID = "ldn-1-20261125-1315"
	if err := late.HandleRequested(context.Background(), env, req); err != nil {
		t.Fatal(err)
	}
	var rejected event.BookingRejected
	if err := queued(t, conn)[0].Envelope.Decode(&rejected); err != nil || rejected.Code != event.RejectShowStarted ||
		!strings.Contains(rejected.Reason, "started at Wed 25 Nov 13:15") {
		t.Errorf("rejection %+v (err %v), want show_started naming the start time", rejected, err)
	}
}

// TestConcurrentDeliveriesAnnounceOneDecision: two deliveries of the same request handled at
// once (a rebalance hands a partition over while the old owner is still working) must not let
// the second see the first's seats as taken and reject its own booking.
func TestConcurrentDeliveriesAnnounceOneDecision(t *testing.T) {
	svc, conn := newService(t)
	ctx := context.Background()
	for i := range 20 {
		env, req := requested(t, fmt.Sprintf("%c%d", 'A'+i%12, 1+i/12)) // all exist in Screen 1
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- svc.HandleRequested(ctx, env, req)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	byBooking := map[string]map[string]bool{}
	for _, m := range queued(t, conn) {
		if byBooking[m.Key] == nil {
			byBooking[m.Key] = map[string]bool{}
		}
		byBooking[m.Key][m.Envelope.Type+" "+m.Envelope.ID] = true
		if m.Envelope.Type != event.TypeSeatsConfirmed {
			t.Errorf("booking %s: %s published, want only its confirmation", m.Key, m.Envelope.Type)
		}
	}
	for id, decisions := range byBooking {
		if len(decisions) != 1 {
			t.Errorf("booking %s: %d different decisions announced: %v", id, len(decisions), decisions)
		}
	}
}

// TestExpiredHoldIsAnnouncedOnceAndFreedOnPaymentsAnswer: a hold that runs out unpaid is
// announced on movie-found once, with what payment needs to close it; its seats stay held until
// payment answers, then go to the next buyer. A paid booking's hold never expires.
func TestExpiredHoldIsAnnouncedOnceAndFreedOnPaymentsAnswer(t *testing.T) {
	conn := dbtest.NewMigrated(t, func(ctx context.Context, d *sqlx.DB) error { return catalog.Seed(ctx, d, now, false) })
	clock := now
	svc := booking.NewService(conn, nil, 10*time.Minute, booking.SeatLimits{}, func() time.Time { return clock }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	unpaid, unpaidReq := requested(t, "C1", "C2")
	paid, paidReq := requested(t, "C3")
	for _, r := range []struct {
		env event.Envelope
		req event.BookingRequested
	}{{unpaid, unpaidReq}, {paid, paidReq}} {
		if err := svc.HandleRequested(ctx, r.env, r.req); err != nil {
			t.Fatal(err)
		}
	}
	var confirmed event.SeatsConfirmed
	if err := queued(t, conn)[0].Envelope.Decode(&confirmed); err != nil {
		t.Fatal(err)
	}
	if !confirmed.HoldExpiresAt.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("hold expires at %v, want 10 minutes after the decision", confirmed.HoldExpiresAt)
	}
	succeeded, _ := event.New(event.TypePaymentSucceeded, paid.BookingID, event.PaymentSucceeded{}, now)
	if err := svc.HandlePaymentSucceeded(ctx, succeeded, event.PaymentSucceeded{}); err != nil {
		t.Fatal(err)
	}

	clock = now.Add(9 * time.Minute)
	if n, err := svc.ExpireHolds(ctx); err != nil || n != 0 {
		t.Fatalf("at 9 minutes: %d holds expired (err %v), want none", n, err)
	}
	clock = now.Add(10 * time.Minute)
	if n, err := svc.ExpireHolds(ctx); err != nil || n != 1 {
		t.Fatalf("at 10 minutes: %d holds expired (err %v), want the unpaid one", n, err)
	}
	if n, err := svc.ExpireHolds(ctx); err != nil || n != 0 {
		t.Fatalf("a second sweep announced %d more (err %v)", n, err)
	}
	// Still unanswered one hold later (payment dead-lettered it in a long outage, say):
	// announced again.
	clock = now.Add(19 * time.Minute)
	if n, err := svc.ExpireHolds(ctx); err != nil || n != 0 {
		t.Fatalf("9 minutes after the expiry: %d announced again (err %v), want none yet", n, err)
	}
	clock = now.Add(20 * time.Minute)
	if n, err := svc.ExpireHolds(ctx); err != nil || n != 1 {
		t.Fatalf("one hold after the expiry, unanswered: %d announced (err %v), want it again", n, err)
	}
	msgs := queued(t, conn)
	last := msgs[len(msgs)-1]
	var expired event.HoldExpired
	if err := last.Envelope.Decode(&expired); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 || last.Envelope.Type != event.TypeHoldExpired || last.Topic != event.TopicMovieFound || last.Key != unpaid.BookingID ||
		expired.Booking.AmountCents != 2*1395 || expired.CardLast4 != "4242" || !expired.HoldExpiresAt.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("queued %d events, last %s %+v; want a hold_expired for the unpaid booking with its details", len(msgs), last.Envelope.Type, expired)
	}

	// The seats wait for payment's answer: a buyer now is still told C1 is taken.
	early, earlyReq := requested(t, "C1")
	if err := svc.HandleRequested(ctx, early, earlyReq); err != nil {
		t.Fatal(err)
	}
	answer := event.PaymentFailed{Code: event.PaymentHoldExpired, Reason: "The payment did not complete while your seats were held."}
	failed, _ := event.New(event.TypePaymentFailed, unpaid.BookingID, answer, clock)
	if err := svc.HandlePaymentFailed(ctx, failed, answer); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(40 * time.Minute)
	if n, err := svc.ExpireHolds(ctx); err != nil || n != 0 {
		t.Fatalf("after payment answered: %d announced (err %v), want none", n, err)
	}
	late, lateReq := requested(t, "C1", "C2")
	if err := svc.HandleRequested(ctx, late, lateReq); err != nil {
		t.Fatal(err)
	}
	statuses := map[string]string{}
	for id, want := range map[string]string{unpaid.BookingID: "failed", paid.BookingID: "paid", early.BookingID: "rejected", late.BookingID: "confirmed"} {
		var got string
		if err := conn.Get(&got, `SELECT status || ':' || reason_code FROM booking.bookings WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		statuses[want] = got
	}
	if statuses["failed"] != "failed:hold_expired" || statuses["paid"] != "paid:" || statuses["rejected"] != "rejected:seat_taken" || statuses["confirmed"] != "confirmed:" {
		t.Errorf("statuses %v: want the unpaid booking failed with hold_expired, the paid one paid, C1 refused before payment's answer and sold after", statuses)
	}
}

// TestBatchDecidesAsOneAtATimeWould: requests fetched together are decided in one transaction,
// and every outcome is the one deciding them one by one gives: seats taken by an earlier request
// of the same batch, a seat held before the batch, unknown seats and shows, a seat listed twice.
// A batch seen again is refused whole, and the one-by-one path it falls back to changes nothing.
func TestBatchDecidesAsOneAtATimeWould(t *testing.T) {
	ctx := context.Background()
	oneByOne, oneConn := newService(t)
	batched, batchConn := newService(t)

	before, beforeReq := requested(t, "A5")
	var batch []kafka.Delivery
	var reqs []event.BookingRequested
	for _, seats := range [][]string{{"A1", "A2"}, {"A2", "A3"}, {"Z99"}, {"A5"}, {"A4", "A4"}, {"A3"}, {"A6"}} {
		env, req := requested(t, seats...)
		batch = append(batch, kafka.Delivery{Envelope: env, Trace: kafka.NextSpan("")})
		reqs = append(reqs, req)
	}
	elsewhere := event.BookingRequested{ShowID: "no-such-show", Seats: []string{"A1"}, CustomerName: "Bo", Phone: "+447700900124",
		Card: event.Card{Brand: "visa", Last4: "4242", Token: "tok_sandbox_4242_x"}}
	env, err := event.New(event.TypeBookingRequested, uuid.NewString(), elsewhere, now)
	if err != nil {
		t.Fatal(err)
	}
	batch = append(batch, kafka.Delivery{Envelope: env})
	reqs = append(reqs, elsewhere)

	for _, svc := range []*booking.Service{oneByOne, batched} {
		if err := svc.HandleRequested(ctx, before, beforeReq); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range batch {
		if err := oneByOne.HandleRequested(ctx, d.Envelope, reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := batched.HandleRequestedBatch(ctx, batch); err != nil {
		t.Fatalf("batch refused: %v", err)
	}

	outcomes := func(conn *sqlx.DB) []string {
		var out []string
		for _, m := range queued(t, conn) {
			line := m.Envelope.Type + " " + m.Key + " " + m.Topic
			switch m.Envelope.Type {
			case event.TypeBookingRejected:
				var r event.BookingRejected
				if err := m.Envelope.Decode(&r); err != nil {
					t.Fatal(err)
				}
				line += " " + r.Code + ": " + r.Reason
			case event.TypeSeatsConfirmed:
				var c event.SeatsConfirmed
				if err := m.Envelope.Decode(&c); err != nil {
					t.Fatal(err)
				}
				line += fmt.Sprintf(" %v %d %s %s", c.Booking.Seats, c.Booking.AmountCents, c.Booking.PhoneMasked, c.HoldExpiresAt)
			}
			out = append(out, line)
		}
		return out
	}
	held := func(conn *sqlx.DB) string {
		var rows []string
		if err := conn.Select(&rows, `SELECT seat_label || ' ' || booking_id FROM booking.held_seats ORDER BY seat_label`); err != nil {
			t.Fatal(err)
		}
		return strings.Join(rows, ", ")
	}
	want, got := outcomes(oneConn), outcomes(batchConn)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("batched outcomes:\n%s\nwant (one at a time):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(strings.Join(got, "\n"), "Seat A2 is already taken") || !strings.Contains(strings.Join(got, "\n"), "Seat A5 is already taken") {
		t.Errorf("the batch did not reject seats taken before it and within it:\n%s", strings.Join(got, "\n"))
	}
	if h := held(batchConn); h != held(oneConn) {
		t.Errorf("held seats %s, want %s", h, held(oneConn))
	}
	for _, m := range queued(t, batchConn)[1:] {
		if m.Envelope.Traceparent == "" {
			t.Errorf("outcome %s of %s carries no trace", m.Envelope.Type, m.Key)
		}
	}

	// Delivered again (a crash before the offsets were committed): refused whole, and the one at
	// a time path announces nothing twice. The same bookings under new event ids (a request
	// published again) are refused too, by the bookings' key rather than the inbox.
	if err := batched.HandleRequestedBatch(ctx, batch); err == nil {
		t.Fatal("a batch decided before was decided again")
	}
	republished := make([]kafka.Delivery, len(batch))
	for i, d := range batch {
		republished[i] = d
		republished[i].Envelope.ID = uuid.NewString()
	}
	if err := batched.HandleRequestedBatch(ctx, republished); err == nil {
		t.Fatal("bookings decided before were decided again under new event ids")
	}
	if h := held(batchConn); h != held(oneConn) {
		t.Errorf("after the refused batches, held seats %s, want %s", h, held(oneConn))
	}
	for i, d := range batch {
		if err := batched.HandleRequested(ctx, d.Envelope, reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if again := outcomes(batchConn); len(again) != len(want) {
		t.Errorf("redelivery queued %d more outcomes", len(again)-len(want))
	}
}

// TestBatchRecordsNothingWhenTheDatabaseRefusesASeat: the primary key on held seats is the last
// line of defence in a batch too. If a decision claims a seat already held (a second decider
// during a rebalance, say), the whole batch is rolled back, its requests' ids included, so the
// one-at-a-time path decides them again.
func TestBatchRecordsNothingWhenTheDatabaseRefusesASeat(t *testing.T) {
	svc, conn := newService(t)
	ctx := context.Background()
	first, firstReq := requested(t, "A1")
	if err := svc.HandleRequested(ctx, first, firstReq); err != nil {
		t.Fatal(err)
	}
	store := booking.NewStore(conn, slog.New(slog.NewTextHandler(io.Discard, nil)))
	env, req := requested(t, "A1")
	outcome, err := event.New(event.TypeSeatsConfirmed, env.BookingID, event.SeatsConfirmed{}, now)
	if err != nil {
		t.Fatal(err)
	}
	expires := now.Add(time.Minute)
	_, _, err = store.DecideBatch(ctx, []string{env.ID}, nil, nil, func(map[booking.ShowSeat]bool, booking.Holdings) ([]booking.Decision, error) {
		// Blind to what is held, as a decider racing another would be.
		return []booking.Decision{{BookingID: env.BookingID, ShowID: req.ShowID, Seats: req.Seats, CustomerName: "Ada",
			PhoneMasked: "•••", AmountCents: 1395, Currency: "GBP", Status: "confirmed", Outcome: outcome, HoldExpiresAt: &expires}}, nil
	})
	if err == nil {
		t.Fatal("a batch holding a seat already held was recorded")
	}
	var inbox, bookings int
	if err := conn.Get(&inbox, `SELECT count(*) FROM booking.inbox WHERE event_id = $1`, env.ID); err != nil {
		t.Fatal(err)
	}
	if err := conn.Get(&bookings, `SELECT count(*) FROM booking.bookings WHERE id = $1`, env.BookingID); err != nil {
		t.Fatal(err)
	}
	if inbox != 0 || bookings != 0 || len(queued(t, conn)) != 1 {
		t.Errorf("after the refusal: %d inbox rows, %d bookings, %d outcomes queued; want 0, 0 and the first booking's 1", inbox, bookings, len(queued(t, conn)))
	}
	// The careful path then tells the request the seat is taken.
	if err := svc.HandleRequested(ctx, env, req); err != nil {
		t.Fatal(err)
	}
	if last := queued(t, conn)[1]; last.Envelope.Type != event.TypeBookingRejected {
		t.Errorf("then one at a time: %s, want a rejection", last.Envelope.Type)
	}
}

// TestBatchMarksPaidAsOneAtATimeWould: payment successes fetched together are marked paid in
// one statement, with the outcome marking them one by one gives: a booking that failed before
// stays failed, a redelivered success changes nothing (even one first delivered before its
// booking was decided), each event's id is in the inbox. A batch with a failed payment is
// refused whole and changes nothing; one at a time it then ends as it would have.
func TestBatchMarksPaidAsOneAtATimeWould(t *testing.T) {
	ctx := context.Background()
	oneByOne, oneConn := newService(t)
	batched, batchConn := newService(t)
	services := []*booking.Service{oneByOne, batched}

	var bookings []event.Envelope
	var reqs []event.BookingRequested
	for _, seat := range []string{"D1", "D2", "D3", "D4", "D5", "D6", "D7"} {
		env, req := requested(t, seat)
		bookings, reqs = append(bookings, env), append(reqs, req)
	}
	succeeded := func(b event.Envelope) event.Envelope {
		env, err := event.New(event.TypePaymentSucceeded, b.BookingID, event.PaymentSucceeded{}, now)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	declined := event.PaymentFailed{Code: "card_declined", Reason: "Your card was declined."}
	failed := func(b event.Envelope) event.Envelope {
		env, err := event.New(event.TypePaymentFailed, b.BookingID, declined, now)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	paidA, paidB, paidC, paidD := succeeded(bookings[0]), succeeded(bookings[1]), succeeded(bookings[2]), succeeded(bookings[3])
	lateF, early, unknown := succeeded(bookings[5]), succeeded(bookings[6]), succeeded(event.Envelope{BookingID: uuid.NewString()})
	failedE, failedF := failed(bookings[4]), failed(bookings[5])

	// The same history in both databases: the booking of early is decided after its success was
	// first delivered (a replay from old offsets), D is paid and F failed before the batch.
	for _, svc := range services {
		if err := svc.HandlePaymentSucceeded(ctx, early, event.PaymentSucceeded{}); err != nil {
			t.Fatal(err)
		}
		for i, b := range bookings {
			if err := svc.HandleRequested(ctx, b, reqs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := svc.HandlePaymentSucceeded(ctx, paidD, event.PaymentSucceeded{}); err != nil {
			t.Fatal(err)
		}
		if err := svc.HandlePaymentFailed(ctx, failedF, declined); err != nil {
			t.Fatal(err)
		}
	}

	// state is everything a payment outcome may change, but the clock's marks.
	state := func(conn *sqlx.DB) string {
		var rows []string
		if err := conn.Select(&rows, `SELECT 'booking ' || id || ' ' || status || ' ' || coalesce(reason_code, '') FROM booking.bookings
			UNION ALL SELECT 'inbox ' || event_id FROM booking.inbox
			UNION ALL SELECT 'held ' || seat_label || ' ' || booking_id FROM booking.held_seats
			ORDER BY 1`); err != nil {
			t.Fatal(err)
		}
		return strings.Join(rows, "\n")
	}
	touched := func(conn *sqlx.DB) string {
		var marks []string
		if err := conn.Select(&marks, `SELECT id || ' ' || updated_at FROM booking.bookings ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		return strings.Join(marks, "\n")
	}

	delivered := func(envs ...event.Envelope) []kafka.Delivery {
		batch := make([]kafka.Delivery, len(envs))
		for i, env := range envs {
			batch[i] = kafka.Delivery{Envelope: env, Trace: kafka.NextSpan("")}
		}
		return batch
	}
	first := delivered(paidA, lateF, paidD, paidB, unknown, early)
	for _, d := range first {
		if err := oneByOne.HandlePaymentSucceeded(ctx, d.Envelope, event.PaymentSucceeded{}); err != nil {
			t.Fatal(err)
		}
	}
	before := touched(batchConn)
	if err := batched.HandlePaymentBatch(ctx, first); err != nil {
		t.Fatalf("batch refused: %v", err)
	}
	if got, want := state(batchConn), state(oneConn); got != want {
		t.Fatalf("after the batch:\n%s\nwant (one at a time):\n%s", got, want)
	}
	var statuses []string
	for _, b := range []event.Envelope{bookings[0], bookings[1], bookings[3], bookings[5], bookings[6]} {
		var status string
		if err := batchConn.Get(&status, `SELECT status FROM booking.bookings WHERE id = $1`, b.BookingID); err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, status)
	}
	if got := strings.Join(statuses, " "); got != "paid paid paid failed confirmed" {
		t.Errorf("statuses of A, B, D, F and the early one: %s; want paid paid paid failed confirmed", got)
	}
	// Only A and B were touched: a redelivery moves nothing, not even the clock's mark.
	if after := touched(batchConn); strings.Count(diffLines(before, after), "\n") != 2 {
		t.Errorf("the batch touched other bookings than A and B:\n%s", diffLines(before, after))
	}

	// The whole batch again (a commit lost): nothing changes.
	before, settled := touched(batchConn), state(batchConn)
	if err := batched.HandlePaymentBatch(ctx, first); err != nil {
		t.Fatalf("redelivered batch refused: %v", err)
	}
	if touched(batchConn) != before || state(batchConn) != settled {
		t.Errorf("a redelivered batch changed something:\n%s", diffLines(before, touched(batchConn)))
	}

	// A failed payment among them: refused whole, nothing recorded; one at a time, the seats
	// of E are freed and C is paid, as in the other database.
	mixed := delivered(paidC, failedE)
	if err := batched.HandlePaymentBatch(ctx, mixed); err == nil {
		t.Fatal("a batch with a failed payment was taken in bulk")
	}
	if state(batchConn) != settled {
		t.Errorf("a refused batch changed something:\n%s", state(batchConn))
	}
	for _, svc := range services {
		if err := svc.HandlePaymentSucceeded(ctx, paidC, event.PaymentSucceeded{}); err != nil {
			t.Fatal(err)
		}
		if err := svc.HandlePaymentFailed(ctx, failedE, declined); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := state(batchConn), state(oneConn); got != want {
		t.Fatalf("after the mixed batch:\n%s\nwant (one at a time):\n%s", got, want)
	}
	if s := state(batchConn); !strings.Contains(s, bookings[2].BookingID+" paid") || strings.Contains(s, "held D5") {
		t.Errorf("after the mixed batch, C is not paid or E's seat is still held:\n%s", s)
	}
}

// diffLines lists the lines of after that are not in before, each ending in a newline.
func diffLines(before, after string) string {
	had := map[string]bool{}
	for _, l := range strings.Split(before, "\n") {
		had[l] = true
	}
	var out strings.Builder
	for _, l := range strings.Split(after, "\n") {
		if !had[l] {
			out.WriteString(l + "\n")
		}
	}
	return out.String()
}

// TestShowsAreKeptForAWhile: a show read for one batch is kept for the next ones, so a change
// to it in the database (a price, by hand) is not seen until 30 seconds after it was read, and
// then it is; one request at a time decides with the same show. A show not found is not kept:
// one the schedule adds is bookable at once.
func TestShowsAreKeptForAWhile(t *testing.T) {
	conn := dbtest.NewMigrated(t, func(ctx context.Context, d *sqlx.DB) error { return catalog.Seed(ctx, d, now, false) })
	clock := now
	svc := booking.NewService(conn, nil, 0, booking.SeatLimits{}, func() time.Time { return clock }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	// decided books seat of showID, in a batch or alone, and returns what the outcome says.
	decided := func(showID, seat string, alone bool) string {
		t.Helper()
		env, req := requested(t, seat)
		req.ShowID = showID
		payload, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		env.Payload = payload
		if alone {
			if err := svc.HandleRequested(ctx, env, req); err != nil {
				t.Fatal(err)
			}
		} else if err := svc.HandleRequestedBatch(ctx, []kafka.Delivery{{Envelope: env, Trace: kafka.NextSpan("")}}); err != nil {
			t.Fatal(err)
		}
		msgs := queued(t, conn)
		last := msgs[len(msgs)-1].Envelope
		if last.Type == event.TypeBookingRejected {
			var r event.BookingRejected
			if err := last.Decode(&r); err != nil {
				t.Fatal(err)
			}
			return r.Code
		}
		var c event.SeatsConfirmed
		if err := last.Decode(&c); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(c.Booking.AmountCents)
	}

	if got := decided(show, "E1", false); got != "1395" {
		t.Fatalf("first batch: %s, want 1395", got)
	}
	if _, err := conn.Exec(`UPDATE catalog.shows SET price_cents = 1500 WHERE id = $1`, show); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(29 * time.Second)
	if got := decided(show, "E2", false); got != "1395" {
		t.Errorf("a batch 29 s later: %s, want the price as read (1395): the catalog was read again", got)
	}
	if got := decided(show, "E3", true); got != "1395" {
		t.Errorf("a request alone 29 s later: %s, want 1395 as in batches", got)
	}
	clock = now.Add(30 * time.Second)
	if got := decided(show, "E4", false); got != "1500" {
		t.Errorf("a batch 30 s later: %s, want the new price 1500", got)
	}

	const added = "ldn-1-20261125-2345"
	if got := decided(added, "E1", false); got != event.RejectUnknownShow {
		t.Fatalf("a show not in the catalog: %s, want %s", got, event.RejectUnknownShow)
	}
	if _, err := conn.Exec(`INSERT INTO catalog.shows (id, movie_id, screen_id, starts_at, price_cents)
		SELECT $1, movie_id, screen_id, starts_at + interval '4 hours', price_cents FROM catalog.shows WHERE id = $2`, added, show); err != nil {
		t.Fatal(err)
	}
	if got := decided(added, "E1", false); got != "1500" {
		t.Errorf("the show once added: %s, want it bookable at once (1500)", got)
	}
}
