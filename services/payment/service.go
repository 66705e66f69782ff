// Package payment is the payment service: it charges the card of every confirmed booking
// through a card processor and announces the outcome on payment-topic.
//
// It is also the one service that knows whether money moved, so it decides how a booking whose
// seat hold ran out ends: not charged at all, or charged too late and refunded. Each booking has
// one row in payment.payments, and every decision is a change of that row's status under its lock:
//
//	(none) ──► charging ──► succeeded | failed         the processor answered in time
//	              └──► expiring ──► refunded | failed   the hold ran out while a charge was open,
//	                        └─────► succeeded           or it approved too late; a refund the
//	                                                    processor refuses lets the charge stand
//	(none) ──► failed (hold_expired)                   the hold ran out before any charge
//
// Only these transitions announce an outcome, so each booking gets exactly one on payment-topic.
// The seats are held until that outcome arrives (the booking service never frees them on its
// own clock), so a success always has its seats; refunding a late one is the rule customers are
// told (a hold lasts HOLD_DURATION), not a way out of a double sale.
package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
	"github.com/boxoffice/boxoffice/services/prepared"
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

// Payment statuses (see the package comment).
const (
	statusCharging  = "charging"
	statusExpiring  = "expiring"
	statusSucceeded = "succeeded"
	statusFailed    = "failed"
	statusRefunded  = "refunded"
)

// Reasons for the two ways a hold's end fails a booking; PaymentFailed.Consequence says where
// the money and the seats stand.
const (
	reasonHoldExpired = "The payment did not complete while your seats were held."
	reasonLate        = "The payment completed after the hold on your seats had ended."
)

// Service charges confirmed bookings.
type Service struct {
	db        *sqlx.DB
	processor gateway.Processor
	relay     *outbox.Relay
	now       func() time.Time
	log       *slog.Logger
}

// NewService wires the payment service to its processor; its relay publishes through pub.
func NewService(db *sqlx.DB, processor gateway.Processor, pub Publisher, now func() time.Time, log *slog.Logger) *Service {
	log = log.With("service", "payment")
	return &Service{db: db, processor: processor, relay: outbox.NewRelay(db, OutboxTable, pub, log), now: now, log: log}
}

// Relay publishes the service's outbox; run it beside the consumer.
func (s *Service) Relay() *outbox.Relay { return s.relay }

// Subscription is what the payment service reads.
var Subscription = kafka.Subscription{Group: GroupID, Topics: []string{event.TopicMovieFound}}

// Consumer reads confirmed bookings and expired holds from movie-found. Both are keyed by
// booking, so a booking's expiry is read after its confirmation.
func (s *Service) Consumer(cluster kafka.Cluster, pub *kafka.Publisher) *kafka.Consumer {
	return kafka.NewConsumer(kafka.ConsumerConfig{
		Cluster: cluster, GroupID: Subscription.Group, Topics: Subscription.Topics,
		Batch: map[string]kafka.BatchHandler{event.TopicMovieFound: s.HandleConfirmedBatch},
	}, kafka.Handlers{
		event.TypeSeatsConfirmed: kafka.On(s.HandleSeatsConfirmed),
		event.TypeHoldExpired:    kafka.On(s.HandleHoldExpired),
	}, pub, s.log)
}

// payment is the row the service keeps per booking.
type payment struct {
	Status      string `db:"status"`
	AmountCents int64  `db:"amount_cents"`
	Currency    string `db:"currency"`
	CardBrand   string `db:"card_brand"`
	CardLast4   string `db:"card_last4"`
	CardToken   string `db:"card_token"`
}

// HandleSeatsConfirmed charges the booking's card once and queues the outcome. A charge cannot
// join a database transaction, so the row is written first ('charging'), then the processor is
// called with the booking id as idempotency key, then the answer and the payment-topic event
// commit together. After a crash in between, the retry gets the processor's first answer and
// moves no money; and whoever closes an expired hold meanwhile knows a charge may be open.
func (s *Service) HandleSeatsConfirmed(ctx context.Context, env event.Envelope, c event.SeatsConfirmed) error {
	b := c.Booking
	if !c.HoldExpiresAt.IsZero() && !s.now().Before(c.HoldExpiresAt) {
		// Read too late (the service was down or behind): never charge for seats no longer held.
		return s.closeExpired(ctx, env, b, c.Card.Brand, c.Card.Last4, nil)
	}
	status, err := s.open(ctx, env.BookingID, b, c.Card)
	if err != nil {
		return err
	}
	switch status {
	case statusCharging:
	case statusExpiring:
		return s.closeExpired(ctx, env, b, c.Card.Brand, c.Card.Last4, nil) // finish what a crash interrupted
	default:
		return nil // decided, with its event queued, on an earlier delivery
	}

	result, err := s.processor.Charge(ctx, chargeRequest(env.BookingID, c.Card, b))
	if err != nil {
		return fmt.Errorf("charge booking %s: %w", env.BookingID, err)
	}

	if result.Approved && !c.HoldExpiresAt.IsZero() && !s.now().Before(c.HoldExpiresAt) {
		// The processor said yes after the seats' hold ran out. The refund goes through
		// closeExpired, which first takes the row over: a concurrent delivery that heard the same
		// yes in time may have recorded a success, and that one must stand, unrefunded.
		return s.closeExpired(ctx, env, b, c.Card.Brand, c.Card.Last4, &result)
	}
	if result.Approved {
		return s.finish(ctx, env, statusCharging, statusSucceeded, result.Reference, "", event.TypePaymentSucceeded,
			event.PaymentSucceeded{Booking: b, PaymentID: result.Reference, CardBrand: c.Card.Brand, CardLast4: c.Card.Last4})
	}
	return s.finish(ctx, env, statusCharging, statusFailed, result.Reference, "", event.TypePaymentFailed,
		event.PaymentFailed{Booking: b, Code: result.DeclineCode, Reason: result.DeclineReason, CardBrand: c.Card.Brand, CardLast4: c.Card.Last4})
}

// HandleHoldExpired closes the payment of a booking whose hold ran out before the booking
// service heard how its payment went.
func (s *Service) HandleHoldExpired(ctx context.Context, env event.Envelope, h event.HoldExpired) error {
	return s.closeExpired(ctx, env, h.Booking, h.CardBrand, h.CardLast4, nil)
}

// open records that a charge is about to be made, unless the booking's payment already has a
// row, and returns the row's status.
func (s *Service) open(ctx context.Context, bookingID string, b event.BookingDetails, card event.Card) (string, error) {
	var status string
	err := prepared.Get(ctx, s.db, &status, `INSERT INTO payment.payments
		(booking_id, amount_cents, currency, card_brand, card_last4, card_token, status)
		VALUES ($1, $2, $3, $4, $5, $6, 'charging')
		ON CONFLICT (booking_id) DO UPDATE SET updated_at = payment.payments.updated_at
		RETURNING status`,
		bookingID, b.AmountCents, b.Currency, card.Brand, card.Last4, card.Token)
	if err != nil {
		return "", fmt.Errorf("open payment of %s: %w", bookingID, err)
	}
	return status, nil
}

// closeExpired ends the payment of a booking whose hold ran out. Without a row, no charge was
// ever tried: the booking fails uncharged. An open charge is first taken over ('expiring', so
// its own handler can no longer record a success), then settled: asking the processor again
// with the same idempotency key gives its answer, and an approval is refunded. A payment
// already decided stands: the booking service releases nothing until payment-topic answers.
// known is the processor's answer when the caller already has it.
func (s *Service) closeExpired(ctx context.Context, cause event.Envelope, b event.BookingDetails, brand, last4 string, known *gateway.ChargeResult) error {
	failed := event.PaymentFailed{Booking: b, Code: event.PaymentHoldExpired, Reason: reasonHoldExpired, CardBrand: brand, CardLast4: last4}
	outcome, raw, err := s.newOutcome(ctx, cause.BookingID, event.TypePaymentFailed, failed)
	if err != nil {
		return err
	}
	var row payment
	err = s.inTx(ctx, "close expired payment of "+cause.BookingID, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO payment.payments
			(booking_id, amount_cents, currency, card_brand, card_last4, card_token, status, failure_code, failure, outcome_event)
			VALUES ($1, $2, $3, $4, $5, '', 'failed', $6, $7, $8) ON CONFLICT (booking_id) DO NOTHING`,
			cause.BookingID, b.AmountCents, b.Currency, brand, last4, failed.Code, failed.Reason, string(raw))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			row.Status = statusFailed
			s.log.InfoContext(ctx, "payment closed: hold expired before any charge", "booking_id", cause.BookingID)
			return s.announce(ctx, tx, cause, outcome)
		}
		if err := tx.GetContext(ctx, &row, `SELECT status, amount_cents, currency, card_brand, card_last4, card_token
			FROM payment.payments WHERE booking_id = $1 FOR UPDATE`, cause.BookingID); err != nil {
			return err
		}
		if row.Status == statusCharging {
			row.Status = statusExpiring
			_, err = tx.ExecContext(ctx, `UPDATE payment.payments SET status = 'expiring', updated_at = now() WHERE booking_id = $1`, cause.BookingID)
			return err
		}
		return nil
	})
	if err != nil || row.Status != statusExpiring {
		return err
	}

	// A charge was open when the hold ran out. Unless the caller heard its answer, replaying it
	// is the one way to learn what it did (if it never reached the processor, this makes it, and
	// it is refunded at once).
	var result gateway.ChargeResult
	if known != nil {
		result = *known
	} else if result, err = s.processor.Charge(ctx, chargeRequest(cause.BookingID,
		event.Card{Brand: row.CardBrand, Last4: row.CardLast4, Token: row.CardToken},
		event.BookingDetails{MovieTitle: b.MovieTitle, StartsAt: b.StartsAt, Seats: b.Seats, AmountCents: row.AmountCents, Currency: row.Currency},
	)); err != nil {
		return fmt.Errorf("settle the open charge of %s: %w", cause.BookingID, err)
	}
	if !result.Approved {
		// The card was declined after all: that is the reason the customer needs.
		failed.Code, failed.Reason = result.DeclineCode, result.DeclineReason
		return s.finish(ctx, cause, statusExpiring, statusFailed, result.Reference, "", event.TypePaymentFailed, failed)
	}
	refund, err := s.refund(ctx, cause.BookingID, result.Reference, b)
	var refused *gateway.RefundRefusedError
	if errors.As(err, &refused) {
		// The processor will not give the money back. The seats are still held (nothing freed
		// them yet), so the booking is honoured rather than left charged without a ticket.
		s.log.ErrorContext(ctx, "refund refused: late payment kept and booking honoured; check with the processor",
			"booking_id", cause.BookingID, "charge", result.Reference, "error", err)
		return s.finish(ctx, cause, statusExpiring, statusSucceeded, result.Reference, "", event.TypePaymentSucceeded,
			event.PaymentSucceeded{Booking: b, PaymentID: result.Reference, CardBrand: row.CardBrand, CardLast4: row.CardLast4})
	}
	if err != nil {
		return err
	}
	failed.Code, failed.Reason, failed.Refunded = event.PaymentLate, reasonLate, true
	return s.finish(ctx, cause, statusExpiring, statusRefunded, result.Reference, refund, event.TypePaymentFailed, failed)
}

// chargeRequest is the charge of a booking's seats. The booking id is the idempotency key: the
// processor answers a repeated charge with its first answer, so every path that charges a
// booking (a redelivery, a batch falling back, an expiry settling an open charge) charges once.
func chargeRequest(bookingID string, card event.Card, b event.BookingDetails) gateway.ChargeRequest {
	return gateway.ChargeRequest{
		IdempotencyKey: bookingID,
		Card:           card,
		AmountCents:    b.AmountCents,
		Currency:       b.Currency,
		Description:    fmt.Sprintf("%s, %s, seats %v", b.MovieTitle, b.StartsAt.Format(time.RFC3339), b.Seats),
	}
}

// refund gives an approved charge back, once: the refund's idempotency key is derived from the
// booking, so every path that refunds a booking asks for the same refund.
func (s *Service) refund(ctx context.Context, bookingID, chargeRef string, b event.BookingDetails) (string, error) {
	res, err := s.processor.Refund(ctx, gateway.RefundRequest{
		IdempotencyKey:  "refund/" + bookingID,
		ChargeReference: chargeRef,
		AmountCents:     b.AmountCents,
		Currency:        b.Currency,
		Reason:          "seat hold expired before the payment completed",
	})
	if err != nil {
		return "", fmt.Errorf("refund charge %s for booking %s: %w", chargeRef, bookingID, err)
	}
	s.log.WarnContext(ctx, "late payment refunded", "booking_id", bookingID, "charge", chargeRef, "refund", res.Reference)
	return res.Reference, nil
}

// finish moves the payment from one status to its final one and queues the outcome, in one
// transaction with the inbox. If the row is no longer in the expected status, someone else
// decided it (a concurrent duplicate, or the hold's expiry took an open charge over) and their
// decision and event stand.
func (s *Service) finish(ctx context.Context, cause event.Envelope, from, to, chargeRef, refundRef, eventType string, payload any) error {
	_, raw, err := s.newOutcome(ctx, cause.BookingID, eventType, payload)
	if err != nil {
		return err
	}
	var failureCode, failure string
	if f, ok := payload.(event.PaymentFailed); ok {
		failureCode, failure = f.Code, f.Reason
	}
	// One statement, so one round trip and its own transaction: the status moved only from the
	// expected one, and then the cause into the inbox and the outcome into the outbox.
	var won bool
	err = prepared.Get(ctx, s.db, &won, `WITH won AS (
			UPDATE payment.payments
			SET status = $3, gateway_ref = $4, refund_ref = $5, failure_code = $6, failure = $7, outcome_event = $8, updated_at = now()
			WHERE booking_id = $1 AND status = $2 RETURNING 1
		), recorded AS (
			INSERT INTO `+InboxTable+` (event_id) SELECT $9 WHERE EXISTS (SELECT 1 FROM won) ON CONFLICT (event_id) DO NOTHING
		), queued AS (
			INSERT INTO `+OutboxTable+` (topic, key, envelope) SELECT $10, $1, $8 WHERE EXISTS (SELECT 1 FROM won)
		)
		SELECT EXISTS (SELECT 1 FROM won)`,
		cause.BookingID, from, to, chargeRef, refundRef, failureCode, failure, string(raw), cause.ID, event.TopicPayment)
	if err != nil {
		return fmt.Errorf("record payment of %s: %w", cause.BookingID, err)
	}
	if won {
		s.relay.Notify()
	}
	if err == nil && won {
		s.log.InfoContext(ctx, "payment "+to, "booking_id", cause.BookingID, "code", failureCode)
	}
	return err
}

// announce records the cause in the inbox and queues the outcome on payment-topic. The inbox is
// a record here, not the guard: the row's status transitions already make a redelivery change
// nothing, whichever event (confirmation or expiry) it is.
func (s *Service) announce(ctx context.Context, tx *sqlx.Tx, cause event.Envelope, outcome event.Envelope) error {
	if _, err := outbox.FirstDelivery(ctx, tx, InboxTable, cause.ID); err != nil {
		return err
	}
	return outbox.Add(ctx, tx, OutboxTable, kafka.Message{Topic: event.TopicPayment, Key: cause.BookingID, Envelope: outcome})
}

// newOutcome builds an outcome event, in the trace of the event that caused it.
func (s *Service) newOutcome(ctx context.Context, bookingID, eventType string, payload any) (event.Envelope, []byte, error) {
	outcome, err := event.New(eventType, bookingID, payload, s.now())
	if err != nil {
		return event.Envelope{}, nil, err
	}
	outcome.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx))
	raw, err := json.Marshal(outcome)
	if err != nil {
		return event.Envelope{}, nil, fmt.Errorf("encode payment outcome: %w", err)
	}
	return outcome, raw, nil
}

// inTx runs fn in a transaction and wakes the relay after a commit.
func (s *Service) inTx(ctx context.Context, what string, fn func(tx *sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	s.relay.Notify()
	return nil
}
