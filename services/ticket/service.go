// Package ticket is the ticket service: once a paid booking's SMS has been dealt with (sent or
// not — a failed text never blocks a ticket), it issues the ticket and publishes ticket-details.
package ticket

import (
	"context"
	"crypto/rand"
	"database/sql"
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
)

// GroupID is the ticket service's consumer group.
const GroupID = "ticket"

// Publisher is the part of the Kafka publisher the service needs.
type Publisher interface {
	Publish(ctx context.Context, msgs ...kafka.Message) error
}

// Service issues tickets.
type Service struct {
	db  *sqlx.DB
	pub Publisher
	now func() time.Time
	log *slog.Logger
}

// NewService wires the ticket service.
func NewService(db *sqlx.DB, pub Publisher, now func() time.Time, log *slog.Logger) *Service {
	return &Service{db: db, pub: pub, now: now, log: log.With("service", "ticket")}
}

// Consumer reads notification outcomes.
func (s *Service) Consumer(brokers []string, pub *kafka.Publisher) *kafka.Consumer {
	handle := kafka.On(s.HandleNotification)
	return kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: brokers, GroupID: GroupID, Topics: []string{event.TopicNotificationSent},
	}, kafka.Handlers{
		event.TypeNotificationSent:   handle,
		event.TypeNotificationFailed: handle,
	}, pub, s.log)
}

// HandleNotification issues the ticket of a paid booking, once.
func (s *Service) HandleNotification(ctx context.Context, env event.Envelope, n event.NotificationResult) error {
	if !n.Paid {
		return nil // the payment failed: there is nothing to print
	}
	if previous, err := s.outcome(ctx, env.BookingID); err != nil {
		return err
	} else if previous != nil {
		return s.publish(ctx, *previous)
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
		err := s.issue(ctx, env.BookingID, t)
		var pqErr *pq.Error
		if errors.As(err, &pqErr) && pqErr.Constraint == "tickets_code_key" && attempt < 5 {
			continue // two tickets drew the same short code: draw again
		}
		if err != nil {
			return err
		}
		break
	}
	stored, err := s.outcome(ctx, env.BookingID)
	if err != nil || stored == nil {
		return errors.Join(errors.New("ticket recorded but not readable"), err)
	}
	return s.publish(ctx, *stored)
}

func (s *Service) issue(ctx context.Context, bookingID string, t event.TicketIssued) error {
	outcome, err := event.New(event.TypeTicketIssued, bookingID, t, s.now())
	if err != nil {
		return err
	}
	raw, err := json.Marshal(outcome)
	if err != nil {
		return fmt.Errorf("encode ticket: %w", err)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO ticket.tickets
		(id, booking_id, code, show_id, movie_title, theatre_name, theatre_location, starts_at,
		 screen_number, seats, booked_under, amount_cents, currency, issued_at, outcome_event)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT (booking_id) DO NOTHING`,
		t.TicketID, bookingID, t.Code, t.ShowID, t.MovieTitle, t.TheatreName, t.TheatreLocation, t.StartsAt,
		t.ScreenNumber, pq.Array(t.Seats), t.BookedUnder, t.AmountCents, t.Currency, t.IssuedAt, raw)
	if err != nil {
		return fmt.Errorf("record ticket of %s: %w", bookingID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		s.log.Info("ticket issued", "booking_id", bookingID, "ticket_id", t.TicketID, "code", t.Code)
	}
	return nil
}

func (s *Service) outcome(ctx context.Context, bookingID string) (*event.Envelope, error) {
	var raw []byte
	err := s.db.GetContext(ctx, &raw, `SELECT outcome_event FROM ticket.tickets WHERE booking_id = $1`, bookingID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up ticket of %s: %w", bookingID, err)
	}
	env, err := event.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode stored ticket: %v (our own record, so retried, not dead-lettered)", err)
	}
	return &env, nil
}

func (s *Service) publish(ctx context.Context, outcome event.Envelope) error {
	return s.pub.Publish(ctx, kafka.Message{Topic: event.TopicTicketDetails, Key: outcome.BookingID, Envelope: outcome})
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
