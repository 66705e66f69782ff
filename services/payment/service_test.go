package payment_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
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
	gateway.Charger
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
	return c.Charger.Charge(ctx, req)
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
	charger := &countingCharger{Charger: sandbox}
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
	charger := &countingCharger{Charger: sandbox, fail: errors.New("processor timeout")}
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
