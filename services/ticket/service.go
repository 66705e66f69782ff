// Package ticket is the ticket service: once a paid booking's SMS has been dealt with (sent or
// not — a failed text never blocks a ticket), it issues the ticket and publishes ticket-details.
package ticket

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// GroupID is the ticket service's consumer group.
const GroupID = "ticket"

// Publisher is the part of the Kafka publisher the service's relay needs.
type Publisher = outbox.Publisher

// Tables of the ticket service's outbox and inbox.
const (
	OutboxTable = "ticket.outbox"
	InboxTable  = "ticket.inbox"
)

// Service issues tickets.
type Service struct {
	db    *sqlx.DB
	relay *outbox.Relay
	now   func() time.Time
	log   *slog.Logger
}

// NewService wires the ticket service; its relay publishes what it issues through pub.
func NewService(db *sqlx.DB, pub Publisher, now func() time.Time, log *slog.Logger) *Service {
	log = log.With("service", "ticket")
	return &Service{db: db, relay: outbox.NewRelay(db, OutboxTable, pub, log), now: now, log: log}
}

// Relay publishes the service's outbox; run it beside the consumer.
func (s *Service) Relay() *outbox.Relay { return s.relay }

// Subscription is what the ticket service reads.
var Subscription = kafka.Subscription{Group: GroupID, Topics: []string{event.TopicNotificationSent}}

// Consumer reads notification outcomes.
func (s *Service) Consumer(cluster kafka.Cluster, pub *kafka.Publisher) *kafka.Consumer {
	handle := kafka.On(s.HandleNotification)
	return kafka.NewConsumer(kafka.ConsumerConfig{
		Cluster: cluster, GroupID: Subscription.Group, Topics: Subscription.Topics,
	}, kafka.Handlers{
		event.TypeNotificationSent:   handle,
		event.TypeNotificationFailed: handle,
	}, pub, s.log)
}

// HandleNotification issues the ticket of a paid booking, once: the ticket, the event id and the
// ticket-details event are written in one transaction, and the relay publishes the event.
func (s *Service) HandleNotification(ctx context.Context, env event.Envelope, n event.NotificationResult) error {
	if !n.Paid {
		return nil // the payment failed: there is nothing to print
	}
	b := n.Booking
	for attempt := 0; ; attempt++ {
		t := event.TicketIssued{
			TicketID:        uuid.NewString(),
			Code:            NewCode(),
			ShowID:          b.ShowID,
			MovieTitle:      b.MovieTitle,
			TheatreName:     b.TheatreName,
			TheatreLocation: b.TheatreLocation,
			StartsAt:        b.StartsAt,
			Timezone:        b.Timezone,
			ScreenNumber:    b.ScreenNumber,
			Seats:           b.Seats,
			BookedUnder:     b.CustomerName,
			AmountCents:     b.AmountCents,
			Currency:        b.Currency,
			IssuedAt:        s.now().UTC(),
		}
		err := s.issue(ctx, env, t)
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Constraint == "tickets_code_key" && attempt < 5 {
			continue // two tickets drew the same short code: draw again
		}
		return err
	}
}

func (s *Service) issue(ctx context.Context, cause event.Envelope, t event.TicketIssued) error {
	bookingID := cause.BookingID
	issued, err := event.New(event.TypeTicketIssued, bookingID, t, s.now())
	if err != nil {
		return err
	}
	issued.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx)) // one booking, one trace
	raw, err := json.Marshal(issued)
	if err != nil {
		return fmt.Errorf("encode ticket: %w", err)
	}
	// One statement, so one round trip and its own transaction: the event id into the inbox,
	// the ticket (one per booking) and its ticket-details event into the outbox, each only if
	// the one before took effect. A redelivery records nothing; so does another event about a
	// booking whose ticket is issued (its notification announced twice, say).
	var recorded bool
	if err := prepared.Get(ctx, s.db, &recorded, `WITH first AS (
			INSERT INTO `+InboxTable+` (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING RETURNING 1
		), ticket AS (
			INSERT INTO ticket.tickets
				(id, booking_id, code, show_id, movie_title, theatre_name, theatre_location, starts_at,
				 screen_number, seats, booked_under, amount_cents, currency, issued_at, outcome_event)
			SELECT $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16
			WHERE EXISTS (SELECT 1 FROM first)
			ON CONFLICT (booking_id) DO NOTHING RETURNING 1
		), queued AS (
			INSERT INTO `+OutboxTable+` (topic, key, envelope) SELECT $17, $3, $18 WHERE EXISTS (SELECT 1 FROM ticket)
		)
		SELECT EXISTS (SELECT 1 FROM ticket)`,
		cause.ID, t.TicketID, bookingID, t.Code, t.ShowID, t.MovieTitle, t.TheatreName, t.TheatreLocation, t.StartsAt,
		t.ScreenNumber, pq.Array(t.Seats), t.BookedUnder, t.AmountCents, t.Currency, t.IssuedAt, string(raw),
		event.TopicTicketDetails, string(raw)); err != nil {
		return fmt.Errorf("issue ticket for %s: %w", bookingID, err)
	}
	if !recorded {
		return nil
	}
	s.relay.Notify()
	s.log.InfoContext(ctx, "ticket issued", "booking_id", bookingID, "ticket_id", t.TicketID, "code", t.Code)
	return nil
}

// codeAlphabet leaves out letters and digits people confuse when reading a code aloud (0/O, 1/I/L).
const codeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// NewCode draws a short code a person can read to the box office, like "K7Q-M4XP".
func NewCode() string {
	b := make([]byte, 7)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(codeAlphabet))))
		b[i] = codeAlphabet[n.Int64()]
	}
	return string(b[:3]) + "-" + string(b[3:])
}
