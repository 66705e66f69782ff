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
	"github.com/lib/pq"

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
			Batch: map[string]kafka.BatchHandler{event.TopicBookingMovie: s.HandleContactsBatch},
		}, kafka.Handlers{event.TypeBookingRequested: kafka.On(s.HandleBookingRequested)}, pub, s.log),
		kafka.NewConsumer(kafka.ConsumerConfig{
			Cluster: cluster, GroupID: Subscriptions[1].Group, Topics: Subscriptions[1].Topics,
			Batch: map[string]kafka.BatchHandler{event.TopicPayment: s.HandlePaymentBatch},
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
	return s.notify(ctx, env, succeededText(p))
}

// HandlePaymentFailed texts why the booking did not go through.
func (s *Service) HandlePaymentFailed(ctx context.Context, env event.Envelope, p event.PaymentFailed) error {
	return s.notify(ctx, env, failedText(p))
}

// text is the SMS a payment outcome calls for, and the result it will announce.
type text struct {
	kind   string
	body   string
	result event.NotificationResult
}

func succeededText(p event.PaymentSucceeded) text {
	b := p.Booking
	return text{KindBookingConfirmed,
		fmt.Sprintf("Boxoffice: you're booked! %s, %s, screen %d, %s. Seats %s. Your ticket is on its way.",
			b.MovieTitle, b.TheatreName, b.ScreenNumber, localTime(b), strings.Join(b.Seats, " ")),
		event.NotificationResult{Booking: b, Paid: true, PaymentID: p.PaymentID}}
}

func failedText(p event.PaymentFailed) text {
	b := p.Booking
	return text{KindPaymentFailed,
		fmt.Sprintf("Boxoffice: your booking for %s on %s did not go through. %s %s",
			b.MovieTitle, localTime(b), p.Reason, p.Consequence()),
		event.NotificationResult{Booking: b, Paid: false}}
}

// notify sends one SMS of a kind per booking and queues the result. A refused SMS is an
// outcome (announced as failed), never a reason to hold up the booking; an unreachable provider
// is retried. The text cannot be part of a database transaction, so it is sent first, with an
// idempotency key: a retry after a crash before the record commits texts nobody twice.
func (s *Service) notify(ctx context.Context, env event.Envelope, t text) error {
	known, err := s.lookUp(ctx, []event.Envelope{env}, []string{t.kind})
	if err != nil {
		return err
	}
	switch k := known[0]; {
	case k.Done:
		return nil // sent and recorded, with its event queued, on an earlier delivery
	case !k.Phone.Valid:
		return kafka.NotYet(fmt.Errorf("booking %s: %w", env.BookingID, errContactNotYetKnown))
	}
	sent, err := s.send(ctx, env, t, known[0].Phone.String)
	if err != nil {
		return err
	}
	return s.record(ctx, []sentText{sent})
}

// contactState is whether a booking's SMS of a kind was sent, and where to send it.
type contactState struct {
	Done  bool           `db:"done"`
	Phone sql.NullString `db:"phone"`
}

// lookUp reads, for each booking and kind, whether its SMS was sent and the booking's phone
// number, in one round trip, in the order asked.
func (s *Service) lookUp(ctx context.Context, envs []event.Envelope, kinds []string) ([]contactState, error) {
	ids := make([]string, len(envs))
	for i, env := range envs {
		ids[i] = env.BookingID
	}
	var known []contactState
	// A lateral look-up, not EXISTS: the statement is planned once, often while the table is
	// nearly empty, and EXISTS may then be planned as a hash of the whole table, built again on
	// every call (every message ever sent, read for each SMS).
	if err := prepared.Select(ctx, s.db, &known, `SELECT
		m.booking_id IS NOT NULL AS done,
		(SELECT phone FROM notification.contacts c WHERE c.booking_id = q.booking_id::uuid) AS phone
		FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q (booking_id, kind, n)
		LEFT JOIN LATERAL (
			SELECT booking_id FROM notification.messages m WHERE m.booking_id = q.booking_id::uuid AND m.kind = q.kind LIMIT 1
		) m ON true
		ORDER BY q.n`,
		pq.Array(ids), pq.Array(kinds)); err != nil {
		return nil, fmt.Errorf("look up the sms of %d bookings: %w", len(envs), err)
	}
	if len(known) != len(envs) {
		return nil, fmt.Errorf("look up the sms of %d bookings: %d answers", len(envs), len(known))
	}
	return known, nil
}

// sentText is an SMS the provider answered, with the outcome to announce.
type sentText struct {
	cause   event.Envelope
	trace   string // of the cause's delivery
	kind    string
	status  string // delivered or failed
	result  event.NotificationResult
	outcome []byte // the notification-sent event, encoded
	event   event.Envelope
}

// send texts one customer. The provider refusing the message is an outcome; an error means the
// provider could not be asked, and the caller retries.
func (s *Service) send(ctx context.Context, env event.Envelope, t text, phone string) (sentText, error) {
	providerID, sendErr := s.sender.Send(ctx, smsFor(env, t, phone))
	return s.sent(ctx, env, t, providerID, sendErr)
}

// smsFor is the text of t to phone. Its key makes a resend after a crash between sending and
// recording deliver nothing new.
func smsFor(env event.Envelope, t text, phone string) sms.Message {
	return sms.Message{Key: env.BookingID + "/" + t.kind, Phone: phone, Body: t.body}
}

// sent is the outcome of sending t: delivered with the provider's id, refused for good, or an
// error worth retrying.
func (s *Service) sent(ctx context.Context, env event.Envelope, t text, providerID string, sendErr error) (sentText, error) {
	result := t.result
	result.Kind = t.kind
	status, eventType := "delivered", event.TypeNotificationSent
	var refused *sms.DeliveryError
	switch {
	case sendErr == nil:
		result.MessageID = providerID
	case errors.As(sendErr, &refused):
		status, eventType = "failed", event.TypeNotificationFailed
		result.Error = refused.Reason
	default:
		return sentText{}, fmt.Errorf("send %s sms for %s: %w", t.kind, env.BookingID, sendErr)
	}
	outcome, err := event.New(eventType, env.BookingID, result, s.now())
	if err != nil {
		return sentText{}, err
	}
	outcome.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx)) // one booking, one trace
	raw, err := json.Marshal(outcome)
	if err != nil {
		return sentText{}, fmt.Errorf("encode notification outcome: %w", err)
	}
	return sentText{cause: env, trace: kafka.TraceFrom(ctx), kind: t.kind, status: status, result: result, outcome: raw, event: outcome}, nil
}

// record stores sent texts in one statement, so one round trip and its own transaction: each
// cause's event id into the inbox, its message (one per booking and kind) and its outcome into
// the outbox, each only if the one before took effect.
func (s *Service) record(ctx context.Context, texts []sentText) error {
	n := len(texts)
	eventIDs, ids, kinds, statuses, providerIDs, errs, outcomes := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, t := range texts {
		eventIDs[i], ids[i], kinds[i], statuses[i] = t.cause.ID, t.cause.BookingID, t.kind, t.status
		providerIDs[i], errs[i], outcomes[i] = t.result.MessageID, t.result.Error, string(t.outcome)
	}
	// The outcomes recorded, each with its cause and its outbox row.
	var recorded []struct {
		CauseID   string `db:"event_id"`
		OutcomeID string `db:"outcome_id"`
		Queued    int64  `db:"queued"`
	}
	if err := prepared.Select(ctx, s.db, &recorded, `WITH sent AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[])
				WITH ORDINALITY AS t (event_id, booking_id, kind, status, provider_id, error, outcome_event, n)
		), first AS (
			INSERT INTO `+InboxTable+` (event_id) SELECT event_id FROM sent ON CONFLICT (event_id) DO NOTHING RETURNING event_id
		), message AS (
			INSERT INTO notification.messages (booking_id, kind, status, provider_id, error, outcome_event)
			SELECT booking_id::uuid, kind, status, provider_id, error, outcome_event FROM sent JOIN first USING (event_id)
			ON CONFLICT (booking_id, kind) DO NOTHING RETURNING booking_id, kind
		), queued AS (
			INSERT INTO `+OutboxTable+` (topic, key, envelope)
			SELECT $8, t.booking_id, t.outcome_event FROM sent t JOIN message m ON m.booking_id = t.booking_id::uuid AND m.kind = t.kind
			ORDER BY t.n
			RETURNING id, envelope->>'event_id' AS outcome_id
		)
		SELECT t.event_id, q.outcome_id, q.id AS queued FROM queued q JOIN sent t ON t.outcome_event->>'event_id' = q.outcome_id ORDER BY q.id`,
		pq.Array(eventIDs), pq.Array(ids), pq.Array(kinds), pq.Array(statuses), pq.Array(providerIDs), pq.Array(errs), pq.Array(outcomes),
		event.TopicNotificationSent); err != nil {
		return fmt.Errorf("record %d sms: %w", n, err)
	}
	if len(recorded) == 0 {
		return nil
	}
	byOutcome := make(map[string]sentText, n)
	for _, t := range texts {
		byOutcome[t.event.ID] = t
	}
	queuedIDs, queued := make([]int64, len(recorded)), make([]kafka.Message, len(recorded))
	recordedCauses := make(map[string]bool, len(recorded))
	for i, r := range recorded {
		t := byOutcome[r.OutcomeID]
		recordedCauses[r.CauseID] = true
		queuedIDs[i], queued[i] = r.Queued, kafka.Message{Topic: event.TopicNotificationSent, Key: t.cause.BookingID, Envelope: t.event}
	}
	s.relay.Committed(queuedIDs, queued)
	for _, t := range texts {
		if recordedCauses[t.cause.ID] {
			s.log.InfoContext(kafka.WithTrace(ctx, t.trace), "sms "+t.status, "booking_id", t.cause.BookingID, "kind", t.kind, "error", t.result.Error)
		}
	}
	return nil
}

// errContactNotYetKnown is transient: the booking-movie event carrying the number is on another
// topic and may simply not have been read yet.
var errContactNotYetKnown = errors.New("contact not yet known")

// localTime formats a show's start as people at that cinema read it.
func localTime(b event.BookingDetails) string { return b.LocalStart().Format("Mon 2 Jan 15:04") }
