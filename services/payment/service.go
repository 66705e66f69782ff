// Package payment is the payment service: it charges the card of every confirmed booking
// through a card processor and announces the outcome on payment-topic.
package payment

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// GroupID is the payment service's consumer group.
const GroupID = "payment"

// Publisher is the part of the Kafka publisher the service needs.
type Publisher interface {
	Publish(ctx context.Context, msgs ...kafka.Message) error
}

// Service charges confirmed bookings.
type Service struct {
	db      *sqlx.DB
	charger gateway.Charger
	pub     Publisher
	now     func() time.Time
	log     *slog.Logger
}

// NewService wires the payment service to its processor.
func NewService(db *sqlx.DB, charger gateway.Charger, pub Publisher, now func() time.Time, log *slog.Logger) *Service {
	return &Service{db: db, charger: charger, pub: pub, now: now, log: log.With("service", "payment")}
}

// Consumer reads confirmed bookings from movie-found.
func (s *Service) Consumer(brokers []string, pub *kafka.Publisher) *kafka.Consumer {
	return kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: brokers, GroupID: GroupID, Topics: []string{event.TopicMovieFound},
	}, kafka.Handlers{
		event.TypeSeatsConfirmed: kafka.On(s.HandleSeatsConfirmed),
	}, pub, s.log)
}

// HandleSeatsConfirmed charges the booking's card once and publishes the outcome. A redelivered
// event republishes the recorded outcome; the processor's idempotency key (the booking id)
// covers a crash between the charge and the record.
func (s *Service) HandleSeatsConfirmed(ctx context.Context, env event.Envelope, c event.SeatsConfirmed) error {
	if previous, err := s.outcome(ctx, env.BookingID); err != nil {
		return err
	} else if previous != nil {
		return s.publish(ctx, *previous)
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
	_, err = s.db.ExecContext(ctx, `INSERT INTO payment.payments
		(booking_id, amount_cents, currency, card_brand, card_last4, card_token, status, gateway_ref, failure_code, failure, outcome_event)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (booking_id) DO NOTHING`,
		env.BookingID, b.AmountCents, b.Currency, c.Card.Brand, c.Card.Last4, c.Card.Token, status,
		result.Reference, result.DeclineCode, result.DeclineReason, raw)
	if err != nil {
		return fmt.Errorf("record payment of %s: %w", env.BookingID, err)
	}
	s.log.Info("payment "+status, "booking_id", env.BookingID, "amount_cents", b.AmountCents,
		"card", c.Card.Brand+" •"+c.Card.Last4, "decline_code", result.DeclineCode)
	// Publish what was recorded: if a concurrent duplicate won the insert, that is its outcome.
	stored, err := s.outcome(ctx, env.BookingID)
	if err != nil || stored == nil {
		return errors.Join(errors.New("payment recorded but not readable"), err)
	}
	return s.publish(ctx, *stored)
}

func (s *Service) outcome(ctx context.Context, bookingID string) (*event.Envelope, error) {
	var raw []byte
	err := s.db.GetContext(ctx, &raw, `SELECT outcome_event FROM payment.payments WHERE booking_id = $1`, bookingID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up payment of %s: %w", bookingID, err)
	}
	env, err := event.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode stored payment outcome: %v (our own record, so retried, not dead-lettered)", err)
	}
	return &env, nil
}

func (s *Service) publish(ctx context.Context, outcome event.Envelope) error {
	return s.pub.Publish(ctx, kafka.Message{Topic: event.TopicPayment, Key: outcome.BookingID, Envelope: outcome})
}
