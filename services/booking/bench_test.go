package booking_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// BenchmarkSeatDecision: the booking service's whole decision for one request on durable
// PostgreSQL — the inbox check, the catalog read, the hold (or the "seat taken" answer) and the
// outcome queued in the outbox, in one transaction. Each request takes a seat not yet taken.
//
//	go test -run '^$' -bench SeatDecision -benchtime 500x ./services/booking
func BenchmarkSeatDecision(b *testing.B) {
	svc, conn := newService(b)
	slots := freeSeats(b, conn)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		req := event.BookingRequested{ShowID: slots[i].Show, Seats: []string{slots[i].Label}, CustomerName: "Ada",
			Phone: "+447700900123", Card: event.Card{Brand: "visa", Last4: "4242", Token: "tok_sandbox_4242_x"}}
		env, err := event.New(event.TypeBookingRequested, uuid.NewString(), req, now)
		if err != nil {
			b.Fatal(err)
		}
		if err := svc.HandleRequested(ctx, env, req); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkSeatDecisionInBatches: the same decisions, 100 requests fetched together and decided in
// one transaction (HandleRequestedBatch), as the consumer does when requests queue up. The
// figure is per request.
//
//	go test -run '^$' -bench SeatDecisionInBatches -benchtime 2000x ./services/booking
func BenchmarkSeatDecisionInBatches(b *testing.B) {
	svc, conn := newService(b)
	slots := freeSeats(b, conn)
	ctx := context.Background()
	const batchSize = 100
	var batch []kafka.Delivery
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := svc.HandleRequestedBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	i := 0
	for b.Loop() {
		req := event.BookingRequested{ShowID: slots[i].Show, Seats: []string{slots[i].Label}, CustomerName: "Ada",
			Phone: "+447700900123", Card: event.Card{Brand: "visa", Last4: "4242", Token: "tok_sandbox_4242_x"}}
		env, err := event.New(event.TypeBookingRequested, uuid.NewString(), req, now)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, kafka.Delivery{Envelope: env})
		if len(batch) == batchSize {
			flush()
		}
		i++
	}
	flush()
}

// freeSeats lists every seat of every show still to come, enough for b.N requests of one seat.
func freeSeats(b *testing.B, conn *sqlx.DB) []struct{ Show, Label string } {
	b.Helper()
	var slots []struct{ Show, Label string }
	if err := conn.Select(&slots, `SELECT s.id AS show, seat.label FROM catalog.shows s
		JOIN catalog.seats seat ON seat.screen_id = s.screen_id WHERE s.starts_at > $1 ORDER BY s.id, seat.label`, now); err != nil {
		b.Fatal(err)
	}
	if len(slots) < b.N {
		b.Fatalf("%d free seats for %d requests", len(slots), b.N)
	}
	return slots
}
