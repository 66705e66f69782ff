package payment_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/payment"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// countingCharger wraps a processor and counts the charges that reach it.
type countingCharger struct {
	gateway.Processor
	mu    sync.Mutex
	calls int
	fail  error
}

func (c *countingCharger) Charge(ctx context.Context, req gateway.ChargeRequest) (gateway.ChargeResult, error) {
	c.mu.Lock()
	c.calls++
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		return gateway.ChargeResult{}, fail
	}
	return c.Processor.Charge(ctx, req)
}

func confirmed(t *testing.T, sandbox *gateway.Sandbox, card string) (event.Envelope, event.SeatsConfirmed) {
	t.Helper()
	tok, err := sandbox.Tokenize(context.Background(), card)
	if err != nil {
		t.Fatal(err)
	}
	c := event.SeatsConfirmed{Booking: event.BookingDetails{MovieTitle: "Orbital Decay", AmountCents: 2790, Currency: "GBP", Seats: []string{"F7", "F8"}}, Card: tok}
	env, err := event.New(event.TypeSeatsConfirmed, uuid.NewString(), c, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return env, c
}

// TestRedeliveredConfirmationChargesOnce: the same movie-found event handled three times
// reaches the processor once and announces the same outcome each time.
func TestRedeliveredConfirmationChargesOnce(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	sandbox := gateway.NewSandbox(conn)
	charger := &countingCharger{Processor: sandbox}
	svc := payment.NewService(conn, charger, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	env, c := confirmed(t, sandbox, "4242424242424242")
	for range 3 {
		if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
			t.Fatal(err)
		}
	}
	if charger.calls != 1 {
		t.Errorf("%d charges reached the processor, want 1", charger.calls)
	}
	if msgs := queued(t, conn); len(msgs) != 1 || msgs[0].Envelope.Type != event.TypePaymentSucceeded || msgs[0].Topic != event.TopicPayment || msgs[0].Key != env.BookingID {
		t.Errorf("queued %v, want one payment success on payment-topic keyed by booking", msgs)
	}
	var stored string
	if err := conn.Get(&stored, `SELECT card_brand || ' ' || card_last4 || ' ' || card_token FROM payment.payments`); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, "424242424242") {
		t.Errorf("the payments table holds %q: more than brand, last four and token", stored)
	}
}

// TestProcessorOutageIsRetriedNotDeclined: an unreachable processor is an error for the consume
// loop to retry, never a failed booking.
func TestProcessorOutageIsRetriedNotDeclined(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	sandbox := gateway.NewSandbox(conn)
	charger := &countingCharger{Processor: sandbox, fail: errors.New("processor timeout")}
	svc := payment.NewService(conn, charger, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	env, c := confirmed(t, sandbox, "4242424242424242")
	if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err == nil {
		t.Fatal("an outage was swallowed")
	}
	if msgs := queued(t, conn); len(msgs) != 0 {
		t.Errorf("queued %d outcome(s) during an outage", len(msgs))
	}
	charger.fail = nil
	if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
		t.Fatal(err)
	}
	if msgs := queued(t, conn); len(msgs) != 1 || msgs[0].Envelope.Type != event.TypePaymentSucceeded {
		t.Errorf("after the outage: %v", msgs)
	}
}

func queued(t *testing.T, conn *sqlx.DB) []kafka.Message {
	t.Helper()
	msgs, err := outbox.Pending(context.Background(), conn, payment.OutboxTable)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// clock is a test's movable now.
type clock struct {
	mu sync.Mutex
	at time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.at }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.at = c.at.Add(d) }

// slowCharger is a processor that takes its time: the clock moves on during each charge.
type slowCharger struct {
	*countingCharger
	clock *clock
	takes time.Duration
	// fakeTimeout, if set, makes the charge reach the processor and then fail as a timeout
	// would: the money moved, and the service did not hear of it.
	fakeTimeout bool
}

func (c *slowCharger) Charge(ctx context.Context, req gateway.ChargeRequest) (gateway.ChargeResult, error) {
	res, err := c.countingCharger.Charge(ctx, req)
	c.clock.Advance(c.takes)
	if c.fakeTimeout {
		c.fakeTimeout = false
		return gateway.ChargeResult{}, errors.New("processor timeout")
	}
	return res, err
}

type ledger struct{ charges, approved, refunds int }

func readLedger(t *testing.T, conn *sqlx.DB) ledger {
	t.Helper()
	var l ledger
	if err := conn.QueryRow(`SELECT (SELECT count(*) FROM payment_sandbox.charges), (SELECT count(*) FROM payment_sandbox.charges WHERE approved),
		(SELECT count(*) FROM payment_sandbox.refunds)`).Scan(&l.charges, &l.approved, &l.refunds); err != nil {
		t.Fatal(err)
	}
	return l
}

// onlyOutcome checks that exactly one outcome was queued, of the wanted type, and returns it.
func onlyOutcome(t *testing.T, conn *sqlx.DB, wantType string) event.PaymentFailed {
	t.Helper()
	msgs := queued(t, conn)
	if len(msgs) != 1 || msgs[0].Envelope.Type != wantType {
		t.Fatalf("queued %v, want exactly one %s", msgs, wantType)
	}
	var f event.PaymentFailed
	if err := msgs[0].Envelope.Decode(&f); err != nil {
		t.Fatal(err)
	}
	return f
}

func holdFixture(t *testing.T, card string) (*sqlx.DB, *clock, *slowCharger, *payment.Service, event.Envelope, event.SeatsConfirmed) {
	t.Helper()
	conn := dbtest.NewMigrated(t, nil)
	sandbox := gateway.NewSandbox(conn)
	clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
	charger := &slowCharger{countingCharger: &countingCharger{Processor: sandbox}, clock: clk}
	svc := payment.NewService(conn, charger, nil, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	env, c := confirmed(t, sandbox, card)
	c.HoldExpiresAt = clk.Now().Add(10 * time.Minute)
	return conn, clk, charger, svc, env, c
}

// TestConfirmationReadAfterTheHoldEndedIsNeverCharged: a payment service that was down past
// the hold fails the booking without calling the processor.
func TestConfirmationReadAfterTheHoldEndedIsNeverCharged(t *testing.T) {
	conn, clk, charger, svc, env, c := holdFixture(t, "4242424242424242")
	clk.Advance(11 * time.Minute)
	if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
		t.Fatal(err)
	}
	f := onlyOutcome(t, conn, event.TypePaymentFailed)
	if charger.calls != 0 || f.Code != event.PaymentHoldExpired || f.Refunded || f.Reason == "" || f.CardLast4 != c.Card.Last4 {
		t.Errorf("%d charges; outcome %+v; want no charge and a hold_expired failure", charger.calls, f)
	}
}

// TestLatePaymentIsRefunded: the processor approves after the hold ran out. The charge is
// refunded through the gateway, the booking fails saying so, and redeliveries refund nothing
// more and announce nothing more.
func TestLatePaymentIsRefunded(t *testing.T) {
	conn, _, charger, svc, env, c := holdFixture(t, "4242424242424242")
	charger.takes = 11 * time.Minute
	for range 3 {
		if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
			t.Fatal(err)
		}
	}
	f := onlyOutcome(t, conn, event.TypePaymentFailed)
	if f.Code != event.PaymentLate || !f.Refunded || !strings.Contains(f.Consequence(), "refunded in full") {
		t.Errorf("outcome %+v, want a refunded payment_late failure", f)
	}
	if l := readLedger(t, conn); l != (ledger{charges: 1, approved: 1, refunds: 1}) || charger.calls != 1 {
		t.Errorf("ledger %+v after %d charge calls; want one approved charge and its one refund", l, charger.calls)
	}
}

// TestHoldExpiryBeforeAnyChargeClosesThePayment: payment hears of the expiry first (its
// confirmation was dead-lettered, say). The booking fails uncharged, and the confirmation, when
// it comes, charges nothing.
func TestHoldExpiryBeforeAnyChargeClosesThePayment(t *testing.T) {
	conn, _, charger, svc, env, c := holdFixture(t, "4242424242424242")
	expired, _ := event.New(event.TypeHoldExpired, env.BookingID, event.HoldExpired{Booking: c.Booking}, time.Now())
	if err := svc.HandleHoldExpired(context.Background(), expired, event.HoldExpired{Booking: c.Booking, CardBrand: "visa", CardLast4: "4242"}); err != nil {
		t.Fatal(err)
	}
	if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
		t.Fatal(err)
	}
	if f := onlyOutcome(t, conn, event.TypePaymentFailed); f.Code != event.PaymentHoldExpired || charger.calls != 0 {
		t.Errorf("outcome %+v after %d charges; want hold_expired and no charge", f, charger.calls)
	}
}

// TestHoldExpiryAfterASuccessChangesNothing: the booking service swept before it read the
// success. The success stands: no refund, no second outcome.
func TestHoldExpiryAfterASuccessChangesNothing(t *testing.T) {
	conn, _, _, svc, env, c := holdFixture(t, "4242424242424242")
	ctx := context.Background()
	if err := svc.HandleSeatsConfirmed(ctx, env, c); err != nil {
		t.Fatal(err)
	}
	expired, _ := event.New(event.TypeHoldExpired, env.BookingID, event.HoldExpired{Booking: c.Booking}, time.Now())
	if err := svc.HandleHoldExpired(ctx, expired, event.HoldExpired{Booking: c.Booking}); err != nil {
		t.Fatal(err)
	}
	onlyOutcome(t, conn, event.TypePaymentSucceeded)
	if l := readLedger(t, conn); l.refunds != 0 {
		t.Errorf("a successful payment was refunded: %+v", l)
	}
}

// TestHoldExpiryTakesOverAnOpenCharge: the charge reached the processor, but the service never
// heard the answer (a timeout, a crash) before the hold ran out. Closing the hold learns the
// answer with the same idempotency key and refunds it; the original delivery, retried, can no
// longer record a success.
func TestHoldExpiryTakesOverAnOpenCharge(t *testing.T) {
	conn, _, charger, svc, env, c := holdFixture(t, "4242424242424242")
	ctx := context.Background()
	charger.fakeTimeout = true
	if err := svc.HandleSeatsConfirmed(ctx, env, c); err == nil {
		t.Fatal("the timeout was swallowed")
	}
	expired, _ := event.New(event.TypeHoldExpired, env.BookingID, event.HoldExpired{Booking: c.Booking}, time.Now())
	if err := svc.HandleHoldExpired(ctx, expired, event.HoldExpired{Booking: c.Booking, CardBrand: "visa", CardLast4: "4242"}); err != nil {
		t.Fatal(err)
	}
	if err := svc.HandleSeatsConfirmed(ctx, env, c); err != nil {
		t.Fatal(err)
	}
	if f := onlyOutcome(t, conn, event.TypePaymentFailed); f.Code != event.PaymentLate || !f.Refunded {
		t.Errorf("outcome %+v, want the open charge refunded", f)
	}
	if l := readLedger(t, conn); l != (ledger{charges: 1, approved: 1, refunds: 1}) {
		t.Errorf("ledger %+v, want one charge and its refund", l)
	}
}

// TestDeclinedCardIsNotRefunded: a decline within the hold is an ordinary failure.
func TestDeclinedCardIsNotRefunded(t *testing.T) {
	conn, _, _, svc, env, c := holdFixture(t, "4000000000000002")
	if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
		t.Fatal(err)
	}
	if f := onlyOutcome(t, conn, event.TypePaymentFailed); f.Code != gateway.DeclineGeneric || f.Refunded {
		t.Errorf("outcome %+v, want a plain decline", f)
	}
	if l := readLedger(t, conn); l.refunds != 0 {
		t.Errorf("ledger %+v", l)
	}
}

// refusingRefunds is a processor that will not refund.
type refusingRefunds struct{ gateway.Processor }

func (refusingRefunds) Refund(context.Context, gateway.RefundRequest) (gateway.RefundResult, error) {
	return gateway.RefundResult{}, &gateway.RefundRefusedError{Reason: "charge is disputed"}
}

// TestRefusedRefundHonoursTheBooking: a late charge the processor will not refund stands, and
// the booking is paid (its seats were never released) rather than left charged without a ticket.
func TestRefusedRefundHonoursTheBooking(t *testing.T) {
	conn, clk, _, _, env, c := holdFixture(t, "4242424242424242")
	charger := &slowCharger{countingCharger: &countingCharger{Processor: refusingRefunds{gateway.NewSandbox(conn)}}, clock: clk, takes: 11 * time.Minute}
	svc := payment.NewService(conn, charger, nil, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
		t.Fatal(err)
	}
	onlyOutcome(t, conn, event.TypePaymentSucceeded)
	if l := readLedger(t, conn); l != (ledger{charges: 1, approved: 1, refunds: 0}) {
		t.Errorf("ledger %+v, want the one charge, unrefunded", l)
	}
}

// racingCharger lets a test run another delivery of the same confirmation while this one's
// charge is at the processor, then moves the clock.
type racingCharger struct {
	gateway.Processor
	meanwhile func()
	after     func()
}

func (r *racingCharger) Charge(ctx context.Context, req gateway.ChargeRequest) (gateway.ChargeResult, error) {
	res, err := r.Processor.Charge(ctx, req)
	if m := r.meanwhile; m != nil {
		r.meanwhile = nil
		m()
		r.after()
	}
	return res, err
}

// TestLateApprovalNeverRefundsASuccessRecordedInTime: two deliveries of one confirmation (a
// rebalance) get the same approval from the processor; one records it in time, the other hears
// it after the hold ran out. The success stands: no refund under a ticket, one outcome.
func TestLateApprovalNeverRefundsASuccessRecordedInTime(t *testing.T) {
	conn, clk, _, _, env, c := holdFixture(t, "4242424242424242")
	racer := &racingCharger{Processor: gateway.NewSandbox(conn)}
	svc := payment.NewService(conn, racer, nil, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	racer.meanwhile = func() {
		if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
			t.Error(err)
		}
	}
	racer.after = func() { clk.Advance(11 * time.Minute) }
	if err := svc.HandleSeatsConfirmed(context.Background(), env, c); err != nil {
		t.Fatal(err)
	}
	onlyOutcome(t, conn, event.TypePaymentSucceeded)
	if l := readLedger(t, conn); l.refunds != 0 {
		t.Errorf("ledger %+v: a success recorded in time was refunded", l)
	}
}

// TestDeclineLearnedAtExpirySaysDeclined: an open charge settled at the hold's end turns out
// declined; the customer is told the card was declined, not that time ran out.
func TestDeclineLearnedAtExpirySaysDeclined(t *testing.T) {
	conn, _, charger, svc, env, c := holdFixture(t, "4000000000000002")
	ctx := context.Background()
	charger.fakeTimeout = true
	if err := svc.HandleSeatsConfirmed(ctx, env, c); err == nil {
		t.Fatal("the timeout was swallowed")
	}
	expired, _ := event.New(event.TypeHoldExpired, env.BookingID, event.HoldExpired{Booking: c.Booking}, time.Now())
	if err := svc.HandleHoldExpired(ctx, expired, event.HoldExpired{Booking: c.Booking}); err != nil {
		t.Fatal(err)
	}
	if f := onlyOutcome(t, conn, event.TypePaymentFailed); f.Code != gateway.DeclineGeneric || f.Refunded {
		t.Errorf("outcome %+v, want the decline's own code and reason", f)
	}
}

// batchFixture is a payment service over a database of its own whose clock the test moves.
func batchFixture(t *testing.T, clk *clock) (*sqlx.DB, *slowCharger, *payment.Service) {
	t.Helper()
	conn := dbtest.NewMigrated(t, nil)
	charger := &slowCharger{countingCharger: &countingCharger{Processor: gateway.NewSandbox(conn)}, clock: clk}
	return conn, charger, payment.NewService(conn, charger, nil, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// confirmation is a seats-confirmed event for a sandbox test card, its hold ending at holdEnds.
func confirmation(t testing.TB, card string, holdEnds time.Time) (kafka.Delivery, event.SeatsConfirmed) {
	t.Helper()
	tok, err := gateway.NewSandbox(nil).Tokenize(context.Background(), card)
	if err != nil {
		t.Fatal(err)
	}
	c := event.SeatsConfirmed{Booking: event.BookingDetails{MovieTitle: "Orbital Decay", AmountCents: 1395, Currency: "GBP", Seats: []string{"C4"}},
		Card: tok, HoldExpiresAt: holdEnds}
	env, err := event.New(event.TypeSeatsConfirmed, uuid.NewString(), c, holdEnds.Add(-10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Delivery{Envelope: env, Trace: kafka.NextSpan("")}, c
}

// outcomesByBooking is what a payment database says of each booking: its payment's status and
// failure code, and the outcome events queued for it.
func outcomesByBooking(t *testing.T, conn *sqlx.DB) map[string]string {
	t.Helper()
	got := map[string]string{}
	var rows []struct {
		ID     string `db:"booking_id"`
		Status string `db:"status"`
		Code   string `db:"failure_code"`
	}
	if err := conn.Select(&rows, `SELECT booking_id::text, status, failure_code FROM payment.payments`); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		got[r.ID] = r.Status + ":" + r.Code
	}
	for _, m := range queued(t, conn) {
		var f event.PaymentFailed
		if err := m.Envelope.Decode(&f); err != nil {
			t.Fatal(err)
		}
		got[m.Key] += " → " + m.Envelope.Type + ":" + f.Code
	}
	return got
}

// TestBatchChargesAsOneAtATimeWould: confirmations fetched together are charged concurrently and
// recorded in two statements, and every outcome is the one charging them one by one gives:
// approvals and both kinds of decline. A batch seen again changes nothing: it is refused whole,
// and the careful path it falls back to charges no card again.
func TestBatchChargesAsOneAtATimeWould(t *testing.T) {
	ctx := context.Background()
	clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
	oneConn, oneCharger, oneByOne := batchFixture(t, clk)
	batchConn, batchCharger, batched := batchFixture(t, clk)

	var batch []kafka.Delivery
	var payloads []event.SeatsConfirmed
	cards := []string{"4242424242424242", "4000000000000002", "5555555555554444", "4000000000009995", "4242424242424242"}
	for _, card := range cards {
		d, c := confirmation(t, card, clk.Now().Add(10*time.Minute))
		batch, payloads = append(batch, d), append(payloads, c)
	}
	for i, d := range batch {
		if err := oneByOne.HandleSeatsConfirmed(ctx, d.Envelope, payloads[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := batched.HandleConfirmedBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want, got := outcomesByBooking(t, oneConn), outcomesByBooking(t, batchConn)
	for _, d := range batch {
		id := d.Envelope.BookingID
		if got[id] != want[id] || !strings.Contains(want[id], "→") {
			t.Errorf("booking %s: batch %q, one by one %q", id, got[id], want[id])
		}
	}
	if len(got) != len(cards) || batchCharger.calls != len(cards) || oneCharger.calls != len(cards) {
		t.Errorf("%d bookings recorded, %d and %d charges; want %d of each", len(got), batchCharger.calls, oneCharger.calls, len(cards))
	}
	if l := readLedger(t, batchConn); l != (ledger{charges: 5, approved: 3}) {
		t.Errorf("sandbox ledger %+v, want 5 charges, 3 approved, no refund", l)
	}

	if err := batched.HandleConfirmedBatch(ctx, batch); err == nil {
		t.Error("a batch seen before was handled as a batch; want it refused")
	}
	for i, d := range batch {
		if err := batched.HandleSeatsConfirmed(ctx, d.Envelope, payloads[i]); err != nil {
			t.Fatal(err)
		}
	}
	if again := outcomesByBooking(t, batchConn); !maps.Equal(again, got) || batchCharger.calls != len(cards) {
		t.Errorf("after the redelivery: %v and %d charges; want %v and %d", again, batchCharger.calls, got, len(cards))
	}
}

// batchCharger is the sandbox taking a batch of charges in one request, counting its requests.
type batchCharger struct {
	*countingCharger
	sandbox           *gateway.Sandbox
	batches, requests int
	batchFail         error // the answer to every batch request is lost after the sandbox charged
}

func (c *batchCharger) ChargeAll(ctx context.Context, reqs []gateway.ChargeRequest, answered func(int)) ([]gateway.ChargeResult, error) {
	c.mu.Lock()
	c.batches++
	c.requests += len(reqs)
	fail := c.batchFail
	c.mu.Unlock()
	results, err := c.sandbox.ChargeAll(ctx, reqs, answered)
	if fail != nil {
		return nil, fail // the processor charged, and the answer was lost on its way back
	}
	return results, err
}

// TestBatchChargesInOneRequestWhereTheProcessorTakesThem: a processor with a batch endpoint is
// asked once for a batch's charges, with the outcomes one by one gives. When the answer to that
// request is lost after the processor charged, the batch records nothing, and the one-by-one
// path that follows gets the first answers: each card charged once.
func TestBatchChargesInOneRequestWhereTheProcessorTakesThem(t *testing.T) {
	ctx := context.Background()
	clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
	oneConn, _, oneByOne := batchFixture(t, clk)
	conn := dbtest.NewMigrated(t, nil)
	sandbox := gateway.NewSandbox(conn)
	charger := &batchCharger{countingCharger: &countingCharger{Processor: sandbox}, sandbox: sandbox}
	batched := payment.NewService(conn, charger, nil, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))

	var batch []kafka.Delivery
	cards := []string{"4242424242424242", "4000000000000002", "5555555555554444", "4000000000009995", "4242424242424242"}
	for _, card := range cards {
		d, c := confirmation(t, card, clk.Now().Add(10*time.Minute))
		batch = append(batch, d)
		if err := oneByOne.HandleSeatsConfirmed(ctx, d.Envelope, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := batched.HandleConfirmedBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want, got := outcomesByBooking(t, oneConn), outcomesByBooking(t, conn)
	for _, d := range batch {
		id := d.Envelope.BookingID
		if got[id] != want[id] || !strings.Contains(want[id], "→") {
			t.Errorf("booking %s: batch %q, one by one %q", id, got[id], want[id])
		}
	}
	if charger.batches != 1 || charger.requests != len(cards) || charger.calls != 0 {
		t.Errorf("%d batch requests for %d charges and %d single charges; want one request for all %d", charger.batches, charger.requests, charger.calls, len(cards))
	}

	charger.batchFail = errors.New("processor unreachable")
	var retried []kafka.Delivery
	for range 2 {
		d, _ := confirmation(t, "4242424242424242", clk.Now().Add(10*time.Minute))
		retried = append(retried, d)
	}
	if err := batched.HandleConfirmedBatch(ctx, retried); err == nil {
		t.Fatal("a batch whose processor request failed was handled")
	}
	for _, d := range retried {
		if o := outcomesByBooking(t, conn)[d.Envelope.BookingID]; strings.Contains(o, "→") {
			t.Errorf("booking %s has an outcome %q after its charge failed to reach the processor", d.Envelope.BookingID, o)
		}
	}
	charger.batchFail = nil
	for _, d := range retried {
		var c event.SeatsConfirmed
		if err := d.Envelope.Decode(&c); err != nil {
			t.Fatal(err)
		}
		if err := batched.HandleSeatsConfirmed(ctx, d.Envelope, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range retried {
		if o := outcomesByBooking(t, conn)[d.Envelope.BookingID]; o != "succeeded: → payment.succeeded:" {
			t.Errorf("booking %s after the retry: %q, want paid", d.Envelope.BookingID, o)
		}
	}
	if l := readLedger(t, conn); l != (ledger{charges: len(cards) + 2, approved: 3 + 2}) {
		t.Errorf("sandbox ledger %+v, want each of %d cards charged once, 5 approved", l, len(cards)+2)
	}
	if charger.calls != 2 {
		t.Errorf("the one-by-one path asked the processor %d times, want once for each of the 2 bookings", charger.calls)
	}
}

// TestBatchJudgesEachChargeByItsOwnAnswerInOneRequest: in one batch request too, a charge
// approved while its hold was on counts as paid although the slow test card in the same
// request kept the request open past that hold's end.
func TestBatchJudgesEachChargeByItsOwnAnswerInOneRequest(t *testing.T) {
	ctx := context.Background()
	conn := dbtest.NewMigrated(t, nil)
	sandbox := gateway.NewSandbox(conn)
	charger := &batchCharger{countingCharger: &countingCharger{Processor: sandbox}, sandbox: sandbox}
	svc := payment.NewService(conn, charger, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	quick, _ := confirmation(t, "4242424242424242", time.Now().Add(gateway.SlowCardDelay/3))
	slow, _ := confirmation(t, "4000000000003063", time.Now().Add(10*time.Minute))
	if err := svc.HandleConfirmedBatch(ctx, []kafka.Delivery{quick, slow}); err != nil {
		t.Fatal(err)
	}
	got := outcomesByBooking(t, conn)
	for _, d := range []kafka.Delivery{quick, slow} {
		if got[d.Envelope.BookingID] != "succeeded: → payment.succeeded:" {
			t.Errorf("booking %s: %q; want paid (approved while its hold was on)", d.Envelope.BookingID, got[d.Envelope.BookingID])
		}
	}
	if l := readLedger(t, conn); l != (ledger{charges: 2, approved: 2}) || charger.batches != 1 {
		t.Errorf("sandbox ledger %+v in %d requests, want two charges in one and no refund", l, charger.batches)
	}
}

// TestBatchLeavesHoldsAndOutagesToTheCarefulPath: a batch refuses what only the one-by-one path
// knows how to end: a hold that ran out before it was read (never charged), a charge approved
// after its hold ran out (refunded), and a processor outage (retried, never charged twice). In
// each case the one-by-one path that follows gives the booking exactly one outcome.
func TestBatchLeavesHoldsAndOutagesToTheCarefulPath(t *testing.T) {
	ctx := context.Background()
	t.Run("hold ran out before it was read", func(t *testing.T) {
		clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
		conn, charger, svc := batchFixture(t, clk)
		fresh, freshC := confirmation(t, "4242424242424242", clk.Now().Add(10*time.Minute))
		stale, staleC := confirmation(t, "4242424242424242", clk.Now().Add(-time.Second))
		if err := svc.HandleConfirmedBatch(ctx, []kafka.Delivery{fresh, stale}); err == nil {
			t.Fatal("a batch with an expired hold was charged as a batch")
		}
		if charger.calls != 0 {
			t.Errorf("the refused batch made %d charges, want none", charger.calls)
		}
		for _, h := range []struct {
			d kafka.Delivery
			c event.SeatsConfirmed
		}{{fresh, freshC}, {stale, staleC}} {
			if err := svc.HandleSeatsConfirmed(ctx, h.d.Envelope, h.c); err != nil {
				t.Fatal(err)
			}
		}
		got := outcomesByBooking(t, conn)
		if got[fresh.Envelope.BookingID] != "succeeded: → payment.succeeded:" || got[stale.Envelope.BookingID] != "failed:hold_expired → payment.failed:hold_expired" || charger.calls != 1 {
			t.Errorf("outcomes %v after %d charges; want the fresh one paid, the stale one failed uncharged", got, charger.calls)
		}
	})
	t.Run("approved after the hold ran out", func(t *testing.T) {
		clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
		conn, charger, svc := batchFixture(t, clk)
		a, ac := confirmation(t, "4242424242424242", clk.Now().Add(time.Minute))
		b, bc := confirmation(t, "4242424242424242", clk.Now().Add(time.Minute))
		charger.takes = 2 * time.Minute
		if err := svc.HandleConfirmedBatch(ctx, []kafka.Delivery{a, b}); err == nil {
			t.Fatal("charges approved after their holds ran out were recorded as a batch")
		}
		charger.takes = 0
		for _, h := range []struct {
			d kafka.Delivery
			c event.SeatsConfirmed
		}{{a, ac}, {b, bc}} {
			if err := svc.HandleSeatsConfirmed(ctx, h.d.Envelope, h.c); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range []string{a.Envelope.BookingID, b.Envelope.BookingID} {
			if got := outcomesByBooking(t, conn)[id]; got != "refunded:"+event.PaymentLate+" → payment.failed:"+event.PaymentLate {
				t.Errorf("booking %s: %q, want refunded once, failed as late", id, got)
			}
		}
		if l := readLedger(t, conn); l != (ledger{charges: 2, approved: 2, refunds: 2}) {
			t.Errorf("sandbox ledger %+v, want each card charged once and refunded once", l)
		}
	})
	t.Run("processor outage", func(t *testing.T) {
		clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
		conn, charger, svc := batchFixture(t, clk)
		a, ac := confirmation(t, "4242424242424242", clk.Now().Add(10*time.Minute))
		b, _ := confirmation(t, "4000000000000002", clk.Now().Add(10*time.Minute))
		charger.fail = errors.New("processor unreachable")
		if err := svc.HandleConfirmedBatch(ctx, []kafka.Delivery{a, b}); err == nil {
			t.Fatal("a batch whose charges failed was recorded")
		}
		charger.fail = nil
		if err := svc.HandleSeatsConfirmed(ctx, a.Envelope, ac); err != nil {
			t.Fatal(err)
		}
		if err := svc.HandleConfirmedBatch(ctx, []kafka.Delivery{b}); err != nil {
			t.Fatal(err)
		}
		got := outcomesByBooking(t, conn)
		if got[a.Envelope.BookingID] != "succeeded: → payment.succeeded:" || got[b.Envelope.BookingID] != "failed:card_declined → payment.failed:card_declined" {
			t.Errorf("outcomes after the outage: %v", got)
		}
		if l := readLedger(t, conn); l != (ledger{charges: 2, approved: 1}) {
			t.Errorf("sandbox ledger %+v, want one charge each", l)
		}
	})
}

// TestRefusedBatchOpensNoPayment: a batch with a booking decided before is refused before any
// row is opened, so a fresh booking of the batch whose hold then runs out fails uncharged, as it
// would one by one, instead of being charged and refunded.
func TestRefusedBatchOpensNoPayment(t *testing.T) {
	ctx := context.Background()
	clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
	conn, charger, svc := batchFixture(t, clk)
	decided, decidedC := confirmation(t, "4242424242424242", clk.Now().Add(10*time.Minute))
	if err := svc.HandleSeatsConfirmed(ctx, decided.Envelope, decidedC); err != nil {
		t.Fatal(err)
	}
	fresh, freshC := confirmation(t, "4242424242424242", clk.Now().Add(time.Minute))
	if err := svc.HandleConfirmedBatch(ctx, []kafka.Delivery{decided, fresh}); err == nil {
		t.Fatal("a batch with a decided booking was handled as a batch")
	}
	if got := outcomesByBooking(t, conn)[fresh.Envelope.BookingID]; got != "" {
		t.Fatalf("the refused batch left the fresh booking's payment %q; want no row", got)
	}
	clk.Advance(2 * time.Minute)
	if err := svc.HandleSeatsConfirmed(ctx, fresh.Envelope, freshC); err != nil {
		t.Fatal(err)
	}
	if got := outcomesByBooking(t, conn)[fresh.Envelope.BookingID]; got != "failed:hold_expired → payment.failed:hold_expired" || charger.calls != 1 {
		t.Errorf("the fresh booking: %q after %d charges; want failed uncharged (one charge, the decided booking's)", got, charger.calls)
	}
}

// orderedCharger answers one booking at once and the other only after it, two minutes later on
// the test's clock.
type orderedCharger struct {
	gateway.Processor
	clock       *clock
	first, slow string
	firstDone   chan struct{}
}

func (c *orderedCharger) Charge(ctx context.Context, req gateway.ChargeRequest) (gateway.ChargeResult, error) {
	if req.IdempotencyKey == c.slow {
		<-c.firstDone
		c.clock.Advance(2 * time.Minute)
	}
	res, err := c.Processor.Charge(ctx, req)
	if req.IdempotencyKey == c.first {
		close(c.firstDone)
	}
	return res, err
}

// TestBatchJudgesEachChargeByWhenItWasAnswered: a charge approved while its hold was on counts
// as paid, however long a sibling in the batch took, as it would one by one.
func TestBatchJudgesEachChargeByWhenItWasAnswered(t *testing.T) {
	ctx := context.Background()
	clk := &clock{at: time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)}
	conn := dbtest.NewMigrated(t, nil)
	quick, _ := confirmation(t, "4242424242424242", clk.Now().Add(time.Minute))
	slow, _ := confirmation(t, "5555555555554444", clk.Now().Add(10*time.Minute))
	charger := &orderedCharger{Processor: gateway.NewSandbox(conn), clock: clk, first: quick.Envelope.BookingID,
		slow: slow.Envelope.BookingID, firstDone: make(chan struct{})}
	svc := payment.NewService(conn, charger, nil, clk.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := svc.HandleConfirmedBatch(ctx, []kafka.Delivery{quick, slow}); err != nil {
		t.Fatal(err)
	}
	got := outcomesByBooking(t, conn)
	for _, d := range []kafka.Delivery{quick, slow} {
		if got[d.Envelope.BookingID] != "succeeded: → payment.succeeded:" {
			t.Errorf("booking %s: %q; want paid (approved while its hold was on)", d.Envelope.BookingID, got[d.Envelope.BookingID])
		}
	}
	if l := readLedger(t, conn); l != (ledger{charges: 2, approved: 2}) {
		t.Errorf("sandbox ledger %+v, want two charges and no refund", l)
	}
}
