// Package booking is the booking service: it turns a request for seats into a booking, or a
// rejection a person can read, and frees the seats of bookings whose payment failed.
//
// It consumes booking-movie (requests, keyed by show so one show's seat decisions happen in
// order) and payment-topic (outcomes), and publishes movie-found.
//
// Confirmed seats are held for a while (DefaultHold). A sweeper announces holds that ran out
// unpaid (booking.hold_expired); the payment service, which alone knows whether money moved,
// answers on payment-topic, and the seats are freed on that answer like on any failed payment.
// The booking service never frees seats on its own clock: a payment it has not heard of yet
// could otherwise end in a ticket for seats sold again.
package booking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
)

// GroupID is the booking service's consumer group: replicas share it and split the partitions.
const GroupID = "booking"

// MaxSeatsPerBooking bounds one booking, as box offices do.
const MaxSeatsPerBooking = 10

// DefaultHold is how long confirmed seats wait for their payment.
const DefaultHold = 10 * time.Minute

// Publisher is the part of the Kafka publisher the service's relay needs.
type Publisher = outbox.Publisher

// Service decides bookings.
type Service struct {
	store   *Store
	catalog *catalog.Store
	relay   *outbox.Relay
	holdFor time.Duration
	limits  SeatLimits
	now     func() time.Time
	log     *slog.Logger
	shows   sync.Map // show id → the show as read, kept for showFreshFor (see lookup)
	screens sync.Map // screen id → its seat labels, for batches (see lookup)
}

// NewService wires the booking service; its relay publishes through pub. Confirmed seats are
// held for hold (DefaultHold if 0); one buyer holds no more seats of a show than limits allow.
// now is injectable so tests can stand at any moment.
func NewService(db *sqlx.DB, pub Publisher, hold time.Duration, limits SeatLimits, now func() time.Time, log *slog.Logger) *Service {
	log = log.With("service", "booking")
	if hold <= 0 {
		hold = DefaultHold
	}
	return &Service{store: NewStore(db, log), catalog: catalog.NewStore(db), relay: outbox.NewRelay(db, OutboxTable, pub, log),
		holdFor: hold, limits: limits, now: now, log: log}
}

// Relay publishes the service's outbox; run it beside the consumer.
func (s *Service) Relay() *outbox.Relay { return s.relay }

// Subscription is what the booking service reads: requests and payment outcomes.
var Subscription = kafka.Subscription{Group: GroupID, Topics: []string{event.TopicBookingMovie, event.TopicPayment}}

// Consumer reads what the booking service reacts to.
func (s *Service) Consumer(cluster kafka.Cluster, pub *kafka.Publisher) *kafka.Consumer {
	return kafka.NewConsumer(kafka.ConsumerConfig{
		Cluster: cluster, GroupID: Subscription.Group, Topics: Subscription.Topics,
		Batch: map[string]kafka.BatchHandler{event.TopicBookingMovie: s.HandleRequestedBatch, event.TopicPayment: s.HandlePaymentBatch},
	}, kafka.Handlers{
		event.TypeBookingRequested: kafka.On(s.HandleRequested),
		event.TypePaymentSucceeded: kafka.On(s.HandlePaymentSucceeded),
		event.TypePaymentFailed:    kafka.On(s.HandlePaymentFailed),
	}, pub, s.log)
}

var seatLabelPattern = regexp.MustCompile(`^[A-Z][1-9][0-9]?$`)

// rejection is a decision not to book, with a stable code and a sentence for people.
type rejection struct{ code, reason string }

// HandleRequested decides a booking request: check the show and the seats, hold them, and queue
// the outcome in the same transaction. A redelivered request changes nothing: its decision and
// its announcement were committed the first time.
func (s *Service) HandleRequested(ctx context.Context, env event.Envelope, req event.BookingRequested) error {
	if decided, err := s.store.Decided(ctx, env.BookingID); err != nil || decided {
		return err
	}

	show, rej, err := s.check(ctx, req, s.newLookup())
	if err != nil {
		return err
	}
	if rej != nil {
		err = s.reject(ctx, env, req, *rej)
	} else {
		err = s.hold(ctx, env, req, show)
	}
	if err != nil {
		return err
	}
	s.relay.Notify()
	return nil
}

// check validates the request against the catalog. It returns a rejection for anything a person
// got wrong, and an error only for failures worth retrying.
func (s *Service) check(ctx context.Context, req event.BookingRequested, look *lookup) (catalog.Show, *rejection, error) {
	if len(req.Seats) == 0 || len(req.Seats) > MaxSeatsPerBooking {
		return catalog.Show{}, &rejection{event.RejectInvalid, fmt.Sprintf("Choose between 1 and %d seats.", MaxSeatsPerBooking)}, nil
	}
	for i, seat := range req.Seats {
		if !seatLabelPattern.MatchString(seat) {
			return catalog.Show{}, &rejection{event.RejectUnknownSeat, fmt.Sprintf("Seat %q does not exist.", seat)}, nil
		}
		if slices.Contains(req.Seats[:i], seat) {
			return catalog.Show{}, &rejection{event.RejectInvalid, fmt.Sprintf("Seat %s is listed twice.", seat)}, nil
		}
	}
	show, err := look.show(ctx, req.ShowID)
	if errors.Is(err, catalog.ErrNotFound) {
		return catalog.Show{}, &rejection{event.RejectUnknownShow, "This show does not exist. Pick a show from the programme."}, nil
	}
	if err != nil {
		return catalog.Show{}, nil, err
	}
	if !show.StartsAt.After(s.now()) {
		return show, &rejection{event.RejectShowStarted, fmt.Sprintf("%s started at %s: it can no longer be booked. Pick a later show.",
			show.MovieTitle, show.LocalStart().Format("Mon 2 Jan 15:04"))}, nil
	}
	missing, err := look.missingSeats(ctx, show.ScreenID, req.Seats)
	if err != nil {
		return show, nil, err
	}
	if len(missing) > 0 {
		return show, &rejection{event.RejectUnknownSeat, fmt.Sprintf("%s %s in screen %d.",
			seatList(missing), plural(missing, "does not exist", "do not exist"), show.ScreenNumber)}, nil
	}
	return show, nil, nil
}

// hold records the booking and holds its seats in one transaction. If the buyer would hold more
// seats of the show than a cap allows, the request is rejected as over the limit instead; if
// another booking holds any of the seats, as "seat taken".
func (s *Service) hold(ctx context.Context, env event.Envelope, req event.BookingRequested, show catalog.Show) error {
	expires := s.now().Add(s.holdFor).UTC()
	d, err := s.holdDecision(env, req, show, expires)
	if err != nil {
		return err
	}
	// In the trace before it is stored: the hold's expiry continues it (as in a batch).
	d.Outcome.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx))
	capped := s.limits.keys(show.ID, d.Buyer)
	taken, err := s.store.Hold(ctx, env, s.details(req, show), d.Buyer, expires, d.Outcome, capped, func(holding Holdings) error {
		if rej := s.limits.over(capped, len(req.Seats), holding); rej != nil {
			return &overCap{*rej}
		}
		return nil
	})
	var over *overCap
	if errors.As(err, &over) {
		return s.reject(ctx, env, req, over.rejection)
	}
	if err != nil {
		return err
	}
	if len(taken) > 0 {
		return s.reject(ctx, env, req, seatsTaken(taken))
	}
	s.log.InfoContext(ctx, "seats held", "booking_id", env.BookingID, "show_id", show.ID, "seats", req.Seats, "until", expires)
	return nil
}

// details is what every later stage needs to know of a confirmed booking.
func (s *Service) details(req event.BookingRequested, show catalog.Show) event.BookingDetails {
	return event.BookingDetails{
		ShowID:          show.ID,
		MovieID:         show.MovieID,
		MovieTitle:      show.MovieTitle,
		TheatreName:     show.TheatreName,
		TheatreLocation: show.TheatreLocation(),
		ScreenNumber:    show.ScreenNumber,
		StartsAt:        show.StartsAt,
		Timezone:        show.TheatreTimezone,
		Seats:           req.Seats,
		AmountCents:     show.PriceCents * int64(len(req.Seats)),
		Currency:        show.Currency,
		CustomerName:    req.CustomerName,
		PhoneMasked:     event.MaskPhone(req.Phone),
	}
}

func (s *Service) reject(ctx context.Context, env event.Envelope, req event.BookingRequested, rej rejection) error {
	d, err := s.rejectionDecision(env, req, rej)
	if err != nil {
		return err
	}
	d.Outcome.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx))
	if err := s.store.Reject(ctx, env, req, d.PhoneMasked, rej.code, rej.reason, d.Outcome); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "booking rejected", "booking_id", env.BookingID, "show_id", req.ShowID, "code", rej.code, "reason", rej.reason)
	return nil
}

// HandlePaymentSucceeded marks the booking paid; its seats stay held for good.
func (s *Service) HandlePaymentSucceeded(ctx context.Context, env event.Envelope, _ event.PaymentSucceeded) error {
	return s.store.MarkPaid(ctx, env)
}

// HandlePaymentFailed fails the booking and frees its seats for other buyers.
func (s *Service) HandlePaymentFailed(ctx context.Context, env event.Envelope, p event.PaymentFailed) error {
	released, err := s.store.Fail(ctx, env, p.Code, p.Reason)
	if err != nil {
		return err
	}
	if released > 0 {
		s.log.InfoContext(ctx, "seats released after failed payment", "booking_id", env.BookingID, "seats", released, "code", p.Code)
	}
	return nil
}

// ExpireHolds announces the holds that ran out before their payment was heard of, and returns
// how many it announced. An expiry still unanswered after max(hold, 1 minute) is announced again:
// the payment service may have dead-lettered it during a long processor outage, and a repeat
// changes nothing once it has answered.
func (s *Service) ExpireHolds(ctx context.Context) (int, error) {
	now := s.now()
	n, err := s.store.ExpireHolds(ctx, now, now.Add(-max(s.holdFor, time.Minute)), func(bookingID string, c event.SeatsConfirmed) (event.Envelope, error) {
		return event.New(event.TypeHoldExpired, bookingID, event.HoldExpired{
			Booking: c.Booking, CardBrand: c.Card.Brand, CardLast4: c.Card.Last4, HoldExpiresAt: c.HoldExpiresAt,
		}, s.now())
	})
	if n > 0 {
		s.relay.Notify()
		s.log.Info("seat holds expired unpaid; payment asked to close them", "bookings", n)
	}
	return n, err
}

// RunHoldSweeper looks for expired holds until ctx ends, often enough that a hold ends within
// a tenth of its length (at most 5 s) after it ran out.
func (s *Service) RunHoldSweeper(ctx context.Context) error {
	every := min(max(s.holdFor/10, 100*time.Millisecond), 5*time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if _, err := s.ExpireHolds(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("hold sweep failed; retrying at the next tick", "error", err)
		}
	}
}

func (s *Service) newEvent(cause event.Envelope, eventType string, payload any) (event.Envelope, error) {
	return event.New(eventType, cause.BookingID, payload, s.now())
}

// seatsTaken is the rejection of a request some of whose seats another booking holds.
func seatsTaken(taken []string) rejection {
	return rejection{event.RejectSeatTaken,
		fmt.Sprintf("%s %s already taken. Pick other seats.", seatList(taken), plural(taken, "is", "are"))}
}

func plural(items []string, one, many string) string {
	if len(items) == 1 {
		return one
	}
	return many
}

func seatList(seats []string) string {
	if len(seats) == 1 {
		return "Seat " + seats[0]
	}
	return "Seats " + strings.Join(seats[:len(seats)-1], ", ") + " and " + seats[len(seats)-1]
}

func encodeEnvelope(env event.Envelope) ([]byte, error) {
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode outcome: %w", err)
	}
	return b, nil
}
