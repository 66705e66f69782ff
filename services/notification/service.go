// Package notification is the notification service: it texts the customer the outcome of their
// payment and announces on notification-sent whether the text went out.
//
// The full phone number travels only on booking-movie, so the service keeps its own contact book
// from that topic; payment outcomes then need nothing but the booking id to find the number.
package notification

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/notification/sms"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// Consumer groups. Contacts get a reader of their own: a payment outcome whose contact has not
// been read yet is retried in place, and that must never stop the contacts from being read.
const (
	GroupID         = "notification"
	ContactsGroupID = "notification-contacts"
)

// Message kinds: one SMS per booking and kind, at most.
const (
	KindBookingConfirmed = "booking_confirmed"
	KindPaymentFailed    = "payment_failed"
)

// Publisher is the part of the Kafka publisher the service's relay needs.
type Publisher = outbox.Publisher

// Tables of the notification service's outbox and inbox.
const (
	OutboxTable = "notification.outbox"
	InboxTable  = "notification.inbox"
)

// Service sends the SMS for each payment outcome.
type Service struct {
	db     *sqlx.DB
	sender sms.Sender
	relay  *outbox.Relay
	now    func() time.Time
	log    *slog.Logger
}

// NewService wires the notification service to its SMS provider; its relay publishes through pub.
func NewService(db *sqlx.DB, sender sms.Sender, pub Publisher, now func() time.Time, log *slog.Logger) *Service {
	log = log.With("service", "notification")
	return &Service{db: db, sender: sender, relay: outbox.NewRelay(db, OutboxTable, pub, log), now: now, log: log}
}

// Relay publishes the service's outbox; run it beside the consumers.
func (s *Service) Relay() *outbox.Relay { return s.relay }

// Subscriptions are what the notification service reads: contacts, then payment outcomes.
var Subscriptions = []kafka.Subscription{
	{Group: ContactsGroupID, Topics: []string{event.TopicBookingMovie}},
	{Group: GroupID, Topics: []string{event.TopicPayment}},
}

// Consumers read booking requests (for contact details) and payment outcomes, each on its own.
func (s *Service) Consumers(cluster kafka.Cluster, pub *kafka.Publisher) []*kafka.Consumer {
	return []*kafka.Consumer{
		kafka.NewConsumer(kafka.ConsumerConfig{
			Cluster: cluster, GroupID: Subscriptions[0].Group, Topics: Subscriptions[0].Topics,
		}, kafka.Handlers{event.TypeBookingRequested: kafka.On(s.HandleBookingRequested)}, pub, s.log),
		kafka.NewConsumer(kafka.ConsumerConfig{
			Cluster: cluster, GroupID: Subscriptions[1].Group, Topics: Subscriptions[1].Topics,
		}, kafka.Handlers{
			event.TypePaymentSucceeded: kafka.On(s.HandlePaymentSucceeded),
			event.TypePaymentFailed:    kafka.On(s.HandlePaymentFailed),
		}, pub, s.log),
	}
}

// HandleBookingRequested remembers how to reach the customer.
func (s *Service) HandleBookingRequested(ctx context.Context, env event.Envelope, req event.BookingRequested) error {
	_, err := prepared.Exec(ctx, s.db, `INSERT INTO notification.contacts (booking_id, customer_name, phone)
		VALUES ($1, $2, $3) ON CONFLICT (booking_id) DO NOTHING`, env.BookingID, req.CustomerName, req.Phone)
	if err != nil {
		return fmt.Errorf("record contact of %s: %w", env.BookingID, err)
	}
	return nil
}

// HandlePaymentSucceeded texts the booking confirmation.
func (s *Service) HandlePaymentSucceeded(ctx context.Context, env event.Envelope, p event.PaymentSucceeded) error {
	b := p.Booking
	body := fmt.Sprintf("Boxoffice: you're booked! %s, %s, screen %d, %s. Seats %s. Your ticket is on its way.",
		b.MovieTitle, b.TheatreName, b.ScreenNumber, localTime(b), strings.Join(b.Seats, " "))
	return s.notify(ctx, env, KindBookingConfirmed, body, event.NotificationResult{Booking: b, Paid: true, PaymentID: p.PaymentID})
}

// HandlePaymentFailed texts why the booking did not go through.
func (s *Service) HandlePaymentFailed(ctx context.Context, env event.Envelope, p event.PaymentFailed) error {
	b := p.Booking
	body := fmt.Sprintf("Boxoffice: your booking for %s on %s did not go through. %s %s",
		b.MovieTitle, localTime(b), p.Reason, p.Consequence())
	return s.notify(ctx, env, KindPaymentFailed, body, event.NotificationResult{Booking: b, Paid: false})
}

// notify sends one SMS of a kind per booking and queues the result. A refused SMS is an
// outcome (announced as failed), never a reason to hold up the booking; an unreachable provider
// is retried. The text cannot be part of a database transaction, so it is sent first, with an
// idempotency key: a retry after a crash before the record commits texts nobody twice.
func (s *Service) notify(ctx context.Context, env event.Envelope, kind, body string, result event.NotificationResult) error {
	// Whether it was sent, and where to, in one round trip.
	var known struct {
		Done  bool           `db:"done"`
		Phone sql.NullString `db:"phone"`
	}
	if err := prepared.Get(ctx, s.db, &known, `SELECT
		EXISTS (SELECT 1 FROM notification.messages WHERE booking_id = $1 AND kind = $2) AS done,
		(SELECT phone FROM notification.contacts WHERE booking_id = $1) AS phone`, env.BookingID, kind); err != nil {
		return fmt.Errorf("look up %s sms of %s: %w", kind, env.BookingID, err)
	}
	if known.Done {
		return nil // sent and recorded, with its event queued, on an earlier delivery
	}
	if !known.Phone.Valid {
		return kafka.NotYet(fmt.Errorf("booking %s: %w", env.BookingID, errContactNotYetKnown))
	}
	phone := known.Phone.String
	result.Kind = kind
	status, eventType := "delivered", event.TypeNotificationSent
	// The key makes a resend after a crash between sending and recording deliver nothing new.
	providerID, sendErr := s.sender.Send(ctx, sms.Message{Key: env.BookingID + "/" + kind, Phone: phone, Body: body})
	var refused *sms.DeliveryError
	switch {
	case sendErr == nil:
		result.MessageID = providerID
	case errors.As(sendErr, &refused):
		status, eventType = "failed", event.TypeNotificationFailed
		result.Error = refused.Reason
	default:
		return fmt.Errorf("send %s sms for %s: %w", kind, env.BookingID, sendErr)
	}
	outcome, err := event.New(eventType, env.BookingID, result, s.now())
	if err != nil {
		return err
	}
	outcome.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx)) // one booking, one trace
	raw, err := json.Marshal(outcome)
	if err != nil {
		return fmt.Errorf("encode notification outcome: %w", err)
	}
	// One statement, so one round trip and its own transaction: the event id into the inbox, the
	// message (one per booking and kind) and its outcome into the outbox, each only if the one
	// before took effect.
	var recorded bool
	if err := prepared.Get(ctx, s.db, &recorded, `WITH first AS (
			INSERT INTO `+InboxTable+` (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING RETURNING 1
		), message AS (
			INSERT INTO notification.messages (booking_id, kind, status, provider_id, error, outcome_event)
			SELECT $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM first)
			ON CONFLICT (booking_id, kind) DO NOTHING RETURNING 1
		), queued AS (
			INSERT INTO `+OutboxTable+` (topic, key, envelope) SELECT $8, $2, $7 WHERE EXISTS (SELECT 1 FROM message)
		)
		SELECT EXISTS (SELECT 1 FROM message)`,
		env.ID, env.BookingID, kind, status, result.MessageID, result.Error, string(raw), event.TopicNotificationSent); err != nil {
		return fmt.Errorf("record %s sms for %s: %w", kind, env.BookingID, err)
	}
	if !recorded {
		return nil
	}
	s.relay.Notify()
	s.log.InfoContext(ctx, "sms "+status, "booking_id", env.BookingID, "kind", kind, "error", result.Error)
	return nil
}

// errContactNotYetKnown is transient: the booking-movie event carrying the number is on another
// topic and may simply not have been read yet.
var errContactNotYetKnown = errors.New("contact not yet known")

// localTime formats a show's start as people at that cinema read it.
func localTime(b event.BookingDetails) string { return b.LocalStart().Format("Mon 2 Jan 15:04") }
