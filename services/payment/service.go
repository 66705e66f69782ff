// Package payment is the payment service: it charges the card of every confirmed booking
// through a card processor and announces the outcome on payment-topic.
package payment

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// GroupID is the payment service's consumer group.
const GroupID = "payment"

// Publisher is the part of the Kafka publisher the service's relay needs.
type Publisher = outbox.Publisher

// Tables of the payment service's outbox and inbox.
const (
	OutboxTable = "payment.outbox"
	InboxTable  = "payment.inbox"
)

// Service charges confirmed bookings.
type Service struct {
	db      *sqlx.DB
	charger gateway.Charger
	relay   *outbox.Relay
	now     func() time.Time
	log     *slog.Logger
}

// NewService wires the payment service to its processor; its relay publishes through pub.
func NewService(db *sqlx.DB, charger gateway.Charger, pub Publisher, now func() time.Time, log *slog.Logger) *Service {
	log = log.With("service", "payment")
	return &Service{db: db, charger: charger, relay: outbox.NewRelay(db, OutboxTable, pub, log), now: now, log: log}
}

// Relay publishes the service's outbox; run it beside the consumer.
func (s *Service) Relay() *outbox.Relay { return s.relay }

// Consumer reads confirmed bookings from movie-found.
func (s *Service) Consumer(brokers []string, pub *kafka.Publisher) *kafka.Consumer {
	return kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: brokers, GroupID: GroupID, Topics: []string{event.TopicMovieFound},
	}, kafka.Handlers{
		event.TypeSeatsConfirmed: kafka.On(s.HandleSeatsConfirmed),
	}, pub, s.log)
}

// HandleSeatsConfirmed charges the booking's card once and queues the outcome. A charge cannot
// join a database transaction, so it goes first with the booking id as idempotency key: after a
// crash before the record commits, the retry gets the processor's first answer and moves no
// money. The record, the event id and the payment-topic event then commit together.
func (s *Service) HandleSeatsConfirmed(ctx context.Context, env event.Envelope, c event.SeatsConfirmed) error {
	var done bool
	if err := s.db.GetContext(ctx, &done, `SELECT EXISTS (SELECT 1 FROM payment.payments WHERE booking_id = $1)`, env.BookingID); err != nil {
		return fmt.Errorf("look up payment of %s: %w", env.BookingID, err)
	}
	if done {
		return nil // charged and recorded, with its event queued, on an earlier delivery
	}

	b := c.Booking
	result, err := s.charger.Charge(ctx, gateway.ChargeRequest{
		IdempotencyKey: env.BookingID,
		Card:           c.Card,
		AmountCents:    b.AmountCents,
		Currency:       b.Currency,
		Description:    fmt.Sprintf("%s, %s, seats %v", b.MovieTitle, b.StartsAt.Format(time.RFC3339), b.Seats),
	})
	if err != nil {
		return fmt.Errorf("charge booking %s: %w", env.BookingID, err)
	}

	var outcome event.Envelope
	if result.Approved {
		outcome, err = event.New(event.TypePaymentSucceeded, env.BookingID, event.PaymentSucceeded{
			Booking: b, PaymentID: result.Reference, CardBrand: c.Card.Brand, CardLast4: c.Card.Last4,
		}, s.now())
	} else {
		outcome, err = event.New(event.TypePaymentFailed, env.BookingID, event.PaymentFailed{
			Booking: b, Code: result.DeclineCode, Reason: result.DeclineReason, CardBrand: c.Card.Brand, CardLast4: c.Card.Last4,
		}, s.now())
	}
	if err != nil {
		return err
	}
	raw, err := json.Marshal(outcome)
	if err != nil {
		return fmt.Errorf("encode payment outcome: %w", err)
	}
	status := "failed"
	if result.Approved {
		status = "succeeded"
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record payment of %s: %w", env.BookingID, err)
	}
	defer func() { _ = tx.Rollback() }()
	if first, err := outbox.FirstDelivery(ctx, tx, InboxTable, env.ID); err != nil || !first {
		return err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO payment.payments
		(booking_id, amount_cents, currency, card_brand, card_last4, card_token, status, gateway_ref, failure_code, failure, outcome_event)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (booking_id) DO NOTHING`,
		env.BookingID, b.AmountCents, b.Currency, c.Card.Brand, c.Card.Last4, c.Card.Token, status,
		result.Reference, result.DeclineCode, result.DeclineReason, raw)
	if err != nil {
		return fmt.Errorf("record payment of %s: %w", env.BookingID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		// Only the delivery that recorded the payment announces it: a concurrent duplicate
		// got the processor's same answer and stops here.
		if err := outbox.Add(ctx, tx, OutboxTable, kafka.Message{Topic: event.TopicPayment, Key: env.BookingID, Envelope: outcome}); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record payment of %s: %w", env.BookingID, err)
	}
	s.relay.Notify()
	s.log.Info("payment "+status, "booking_id", env.BookingID, "amount_cents", b.AmountCents,
		"card", c.Card.Brand+" •"+c.Card.Last4, "decline_code", result.DeclineCode)
	return nil
}
