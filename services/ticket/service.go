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
		Batch: map[string]kafka.BatchHandler{event.TopicNotificationSent: s.HandleNotificationBatch},
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
	for attempt := 0; ; attempt++ {
		drawn, err := s.newIssue(ctx, env, n.Booking)
		if err != nil {
			return err
		}
		err = s.issueAll(ctx, []issue{drawn})
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Constraint == "tickets_code_key" && attempt < 5 {
			continue // two tickets drew the same short code: draw again
		}
		return err
	}
}

// HandleNotificationBatch issues the tickets of the paid bookings among the notifications
// fetched together, in one statement. Two tickets drawing the same code (or anything else the
// database refuses) sends the batch one at a time instead, where a code is drawn again.
func (s *Service) HandleNotificationBatch(ctx context.Context, batch []kafka.Delivery) error {
	issues := make([]issue, 0, len(batch))
	for _, d := range batch {
		if d.Envelope.Type != event.TypeNotificationSent && d.Envelope.Type != event.TypeNotificationFailed {
			return fmt.Errorf("not for a bulk issue: a %s event", d.Envelope.Type)
		}
		var n event.NotificationResult
		if err := d.Envelope.Decode(&n); err != nil {
			return err
		}
		if !n.Paid {
			continue
		}
		drawn, err := s.newIssue(kafka.WithTrace(ctx, d.Trace), d.Envelope, n.Booking)
		if err != nil {
			return err
		}
		issues = append(issues, drawn)
	}
	if len(issues) == 0 {
		return nil
	}
	return s.issueAll(kafka.WithTrace(ctx, batch[0].Trace), issues)
}

// issue is a ticket about to be issued for the event that caused it.
type issue struct {
	cause  event.Envelope
	trace  string
	ticket event.TicketIssued
	raw    []byte // the ticket-details event, encoded
	event  event.Envelope
}

// newIssue draws a new ticket for a booking, with its ticket-details event.
func (s *Service) newIssue(ctx context.Context, cause event.Envelope, b event.BookingDetails) (issue, error) {
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
	issued, err := event.New(event.TypeTicketIssued, cause.BookingID, t, s.now())
	if err != nil {
		return issue{}, err
	}
	issued.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx)) // one booking, one trace
	raw, err := json.Marshal(issued)
	if err != nil {
		return issue{}, fmt.Errorf("encode ticket: %w", err)
	}
	return issue{cause: cause, trace: kafka.TraceFrom(ctx), ticket: t, raw: raw, event: issued}, nil
}

// ticketRow is an issue as issueAll hands it to PostgreSQL: a ticket.tickets row, and the id of
// the event that caused it.
type ticketRow struct {
	ID              string          `json:"id"`
	BookingID       string          `json:"booking_id"`
	Code            string          `json:"code"`
	ShowID          string          `json:"show_id"`
	MovieTitle      string          `json:"movie_title"`
	TheatreName     string          `json:"theatre_name"`
	TheatreLocation string          `json:"theatre_location"`
	StartsAt        time.Time       `json:"starts_at"`
	ScreenNumber    int             `json:"screen_number"`
	Seats           []string        `json:"seats"`
	BookedUnder     string          `json:"booked_under"`
	AmountCents     int64           `json:"amount_cents"`
	Currency        string          `json:"currency"`
	IssuedAt        time.Time       `json:"issued_at"`
	OutcomeEvent    json.RawMessage `json:"outcome_event"`
	EventID         string          `json:"event_id"`
}

// issueAll records tickets in one statement, so one round trip and its own transaction: each
// cause's event id into the inbox, its ticket (one per booking) and its ticket-details event
// into the outbox, each only if the one before took effect. A redelivery records nothing; so
// does another event about a booking whose ticket is issued (its notification announced twice,
// say).
func (s *Service) issueAll(ctx context.Context, issues []issue) error {
	rows := make([]ticketRow, len(issues))
	for i, is := range issues {
		t := is.ticket
		seats := t.Seats
		if seats == nil {
			seats = []string{}
		}
		rows[i] = ticketRow{ID: t.TicketID, BookingID: is.cause.BookingID, Code: t.Code, ShowID: t.ShowID, MovieTitle: t.MovieTitle,
			TheatreName: t.TheatreName, TheatreLocation: t.TheatreLocation, StartsAt: t.StartsAt, ScreenNumber: t.ScreenNumber,
			Seats: seats, BookedUnder: t.BookedUnder, AmountCents: t.AmountCents, Currency: t.Currency, IssuedAt: t.IssuedAt,
			OutcomeEvent: is.raw, EventID: is.cause.ID}
	}
	raw, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("encode %d tickets: %w", len(rows), err)
	}
	// The tickets recorded, each with its ticket-details event's outbox row.
	var recorded []struct {
		TicketID string `db:"ticket_id"`
		Queued   int64  `db:"queued"`
	}
	if err := prepared.Select(ctx, s.db, &recorded, `WITH issue AS (
			SELECT r.*, e.j->>'event_id' AS event_id, e.j->>'booking_id' AS key, e.n
			FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e (j, n), jsonb_populate_record(NULL::ticket.tickets, e.j) AS r
		), first AS (
			INSERT INTO `+InboxTable+` (event_id) SELECT event_id FROM issue ON CONFLICT (event_id) DO NOTHING RETURNING event_id
		), ticket AS (
			INSERT INTO ticket.tickets
				(id, booking_id, code, show_id, movie_title, theatre_name, theatre_location, starts_at,
				 screen_number, seats, booked_under, amount_cents, currency, issued_at, outcome_event)
			SELECT id, booking_id, code, show_id, movie_title, theatre_name, theatre_location, starts_at,
				screen_number, seats, booked_under, amount_cents, currency, issued_at, outcome_event
			FROM issue JOIN first USING (event_id)
			ON CONFLICT (booking_id) DO NOTHING RETURNING id
		), queued AS (
			INSERT INTO `+OutboxTable+` (topic, key, envelope)
			SELECT $2, i.key, i.outcome_event FROM issue i JOIN ticket USING (id) ORDER BY i.n
			RETURNING id, envelope->>'event_id' AS outcome_id
		)
		SELECT i.id::text AS ticket_id, q.id AS queued FROM queued q JOIN issue i ON i.outcome_event->>'event_id' = q.outcome_id ORDER BY q.id`, string(raw), event.TopicTicketDetails); err != nil {
		return fmt.Errorf("issue %d tickets: %w", len(issues), err)
	}
	if len(recorded) == 0 {
		return nil
	}
	byTicket := make(map[string]issue, len(issues))
	for _, is := range issues {
		byTicket[is.ticket.TicketID] = is
	}
	queuedIDs, queued := make([]int64, len(recorded)), make([]kafka.Message, len(recorded))
	issued := make(map[string]bool, len(recorded))
	for i, r := range recorded {
		is := byTicket[r.TicketID]
		issued[r.TicketID] = true
		queuedIDs[i], queued[i] = r.Queued, kafka.Message{Topic: event.TopicTicketDetails, Key: is.cause.BookingID, Envelope: is.event}
	}
	s.relay.Committed(queuedIDs, queued)
	for _, is := range issues {
		if issued[is.ticket.TicketID] { // the booking's one ticket, not a twin drawn in the same batch
			s.log.InfoContext(kafka.WithTrace(ctx, is.trace), "ticket issued", "booking_id", is.cause.BookingID,
				"ticket_id", is.ticket.TicketID, "code", is.ticket.Code, "batch", len(issues))
		}
	}
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
