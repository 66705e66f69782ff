package booking

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// errNotBatchable sends a batch down the careful path, one event at a time: a redelivery, a
// booking id twice, a failed payment, anything a bulk decision should not guess about.
var errNotBatchable = errors.New("not for a bulk decision")

// HandleRequestedBatch decides the booking requests fetched together in one transaction of a
// few statements, in their order: a popular show's requests queue on one partition, and deciding
// them one transaction each (about ten round trips to PostgreSQL apiece) is what bounded how
// fast a show could sell. The decisions are the ones HandleRequested would make one by one: a
// request whose seats an earlier one in the batch took is rejected as taken. Anything out of the
// ordinary returns an error, and the consumer decides the batch one request at a time instead.
func (s *Service) HandleRequestedBatch(ctx context.Context, batch []kafka.Delivery) error {
	type request struct {
		delivery kafka.Delivery
		req      event.BookingRequested
		show     catalog.Show
		rej      *rejection
		capped   []BuyerKey // the buyer's keys a seat cap applies to
	}
	// The batch's own work (its reads, its transaction, a warning from it) is logged in the trace
	// of its first request; each outcome continues its own request's trace.
	ctx = kafka.WithTrace(ctx, batch[0].Trace)
	requests := make([]request, 0, len(batch))
	ids := make([]string, 0, len(batch))
	eventIDs := make([]string, 0, len(batch))
	for _, d := range batch {
		if d.Envelope.Type != event.TypeBookingRequested {
			return fmt.Errorf("%w: a %s event", errNotBatchable, d.Envelope.Type)
		}
		var req event.BookingRequested
		if err := d.Envelope.Decode(&req); err != nil {
			return err
		}
		if slices.Contains(ids, d.Envelope.BookingID) {
			return fmt.Errorf("%w: booking %s twice", errNotBatchable, d.Envelope.BookingID)
		}
		requests = append(requests, request{delivery: d, req: req})
		ids = append(ids, d.Envelope.BookingID)
		eventIDs = append(eventIDs, d.Envelope.ID)
	}
	// A request handled before, or a booking decided before under another event id, is found
	// inside DecideBatch's transaction (the inbox and the bookings' key), which then rolls back
	// and sends the batch down the careful path. A read to look first cost every batch a round
	// trip on the booking's path, to spare a replay one rolled-back transaction per batch.
	look := s.newBatchLookup()
	var wanted []ShowSeat
	var buyers []BuyerKey
	for i := range requests {
		r := &requests[i]
		show, rej, err := s.check(ctx, r.req, look)
		if err != nil {
			return err
		}
		r.show, r.rej = show, rej
		if rej == nil {
			for _, seat := range r.req.Seats {
				wanted = append(wanted, ShowSeat{show.ID, seat})
			}
			r.capped = s.limits.keys(show.ID, buyerOf(r.req))
			buyers = append(buyers, r.capped...)
		}
	}

	expires := s.now().Add(s.holdFor).UTC()
	var decisions []Decision
	queuedIDs, queued, err := s.store.DecideBatch(ctx, eventIDs, wanted, buyers, func(held map[ShowSeat]bool, holding Holdings) ([]Decision, error) {
		decisions = decisions[:0]
		for _, r := range requests {
			env := r.delivery.Envelope
			if r.rej == nil {
				// As one at a time: the cap first, then the seats.
				r.rej = s.limits.over(r.capped, len(r.req.Seats), holding)
			}
			if r.rej == nil {
				var taken []string
				for _, seat := range r.req.Seats {
					if held[ShowSeat{r.show.ID, seat}] {
						taken = append(taken, seat)
					}
				}
				if len(taken) > 0 {
					slices.Sort(taken)
					rej := seatsTaken(taken)
					r.rej = &rej
				}
			}
			var d Decision
			var err error
			if r.rej != nil {
				d, err = s.rejectionDecision(env, r.req, *r.rej)
			} else {
				for _, seat := range r.req.Seats {
					held[ShowSeat{r.show.ID, seat}] = true // for the requests after this one
				}
				for _, k := range r.capped {
					holding[k] += len(r.req.Seats) // and what its buyer now holds
				}
				d, err = s.holdDecision(env, r.req, r.show, expires)
			}
			if err != nil {
				return nil, err
			}
			d.Outcome.Traceparent = kafka.NextSpan(r.delivery.Trace) // one booking, one trace
			decisions = append(decisions, d)
		}
		return decisions, nil
	})
	if err != nil {
		return err
	}
	s.relay.Committed(queuedIDs, queued)
	for i, d := range decisions {
		logCtx := kafka.WithTrace(ctx, requests[i].delivery.Trace)
		if d.Status == "confirmed" {
			s.log.InfoContext(logCtx, "seats held", "booking_id", d.BookingID, "show_id", d.ShowID, "seats", d.Seats, "until", expires, "batch", len(decisions))
		} else {
			s.log.InfoContext(logCtx, "booking rejected", "booking_id", d.BookingID, "show_id", d.ShowID, "code", d.ReasonCode, "reason", d.Reason, "batch", len(decisions))
		}
	}
	return nil
}

// HandlePaymentBatch marks the bookings of the payment successes fetched together paid in one
// statement, where one each was a round trip per booking. A failed payment (it releases seats,
// in a transaction of its own) or a booking twice (its events must keep their order) sends the
// whole batch the careful way, one event at a time.
func (s *Service) HandlePaymentBatch(ctx context.Context, batch []kafka.Delivery) error {
	causes := make([]event.Envelope, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, d := range batch {
		env := d.Envelope
		if env.Type != event.TypePaymentSucceeded {
			return fmt.Errorf("%w: a %s event", errNotBatchable, env.Type)
		}
		var paid event.PaymentSucceeded
		if err := env.Decode(&paid); err != nil {
			return err // the careful path dead-letters it
		}
		if seen[env.BookingID] {
			return fmt.Errorf("%w: booking %s twice", errNotBatchable, env.BookingID)
		}
		seen[env.BookingID] = true
		causes = append(causes, env)
	}
	return s.store.MarkAllPaid(kafka.WithTrace(ctx, batch[0].Trace), causes)
}

// holdDecision is a confirmed booking with its seats-confirmed outcome.
func (s *Service) holdDecision(env event.Envelope, req event.BookingRequested, show catalog.Show, expires time.Time) (Decision, error) {
	details := s.details(req, show)
	card := req.Card
	card.Fingerprint = "" // for the seat caps here; payment needs the token alone
	outcome, err := s.newEvent(env, event.TypeSeatsConfirmed, event.SeatsConfirmed{Booking: details, Card: card, HoldExpiresAt: expires})
	if err != nil {
		return Decision{}, err
	}
	return Decision{BookingID: env.BookingID, ShowID: show.ID, Seats: req.Seats, CustomerName: req.CustomerName,
		PhoneMasked: details.PhoneMasked, AmountCents: details.AmountCents, Currency: details.Currency,
		Status: "confirmed", Outcome: outcome, HoldExpiresAt: &expires, Buyer: buyerOf(req)}, nil
}

// rejectionDecision is a rejected booking with its booking-rejected outcome.
func (s *Service) rejectionDecision(env event.Envelope, req event.BookingRequested, rej rejection) (Decision, error) {
	outcome, err := s.newEvent(env, event.TypeBookingRejected, event.BookingRejected{
		ShowID: req.ShowID, Seats: req.Seats, Code: rej.code, Reason: rej.reason,
	})
	if err != nil {
		return Decision{}, err
	}
	seats := req.Seats
	if seats == nil {
		seats = []string{}
	}
	return Decision{BookingID: env.BookingID, ShowID: req.ShowID, Seats: seats, CustomerName: req.CustomerName,
		PhoneMasked: event.MaskPhone(req.Phone), Currency: "", Status: "rejected",
		ReasonCode: rej.code, Reason: rej.reason, Outcome: outcome}, nil
}

// lookup reads the catalog for checking requests. One lookup serves one request, or one batch:
// a show is read once for all its requests, and kept for the service a while (showFreshFor);
// in batches a screen's seats are read once for the service (see missingSeats).
type lookup struct {
	catalog     *catalog.Store
	store       *Store
	now         func() time.Time
	wholeScreen bool // read a screen's every seat once (a batch), or only the requested ones
	shows       map[string]showLookup
	kept        *sync.Map // show id → keptShow, shared by the service
	screens     *sync.Map // screen id → map[string]bool, its seat labels, shared by the service
}

type showLookup struct {
	show catalog.Show
	err  error
}

// showFreshFor is how long the service trusts a show it read. Shows are reference data written
// only by the seeder, which only ever adds (ON CONFLICT DO NOTHING, also when the schedule
// refresher runs), so a show read stays right; the bound is for one changed by hand
// (rescheduled, repriced), which requests see within that time. Reading it for every batch was
// a 4-table join per booking.
const showFreshFor = 30 * time.Second

// age is how long before now t was; a clock set back (in tests) makes everything old, so a
// show is read again rather than trusted from the future.
func age(t, now time.Time) time.Duration {
	if now.Before(t) {
		return showFreshFor
	}
	return now.Sub(t)
}

// keptShow is a show as read at readAt.
type keptShow struct {
	show   catalog.Show
	readAt time.Time
}

func (s *Service) newLookup() *lookup {
	return &lookup{catalog: s.catalog, store: s.store, now: s.now, shows: map[string]showLookup{}, kept: &s.shows, screens: &s.screens}
}

func (s *Service) newBatchLookup() *lookup {
	l := s.newLookup()
	l.wholeScreen = true
	return l
}

func (l *lookup) show(ctx context.Context, id string) (catalog.Show, error) {
	if found, ok := l.shows[id]; ok {
		return found.show, found.err
	}
	if v, ok := l.kept.Load(id); ok {
		if k := v.(keptShow); age(k.readAt, l.now()) < showFreshFor {
			l.shows[id] = showLookup{show: k.show}
			return k.show, nil
		}
	}
	show, err := l.catalog.Show(ctx, id)
	if err == nil {
		l.kept.Store(id, keptShow{show: show, readAt: l.now()})
	}
	// A show not found is kept for this request or batch only: one the schedule refresher adds
	// must be bookable at once.
	if err == nil || errors.Is(err, catalog.ErrNotFound) {
		l.shows[id] = showLookup{show, err}
	}
	return show, err
}

// missingSeats returns the labels that are not seats of the screen, sorted.
func (l *lookup) missingSeats(ctx context.Context, screenID string, labels []string) ([]string, error) {
	if !l.wholeScreen {
		return l.store.MissingSeats(ctx, screenID, labels)
	}
	// A screen's seats are kept for the life of the service: the seeder writes them with the
	// screen and only ever adds. A label not among them reads the screen again, in case seats
	// were added since, before the request is turned down.
	var seats map[string]bool
	cached, ok := l.screens.Load(screenID)
	if ok {
		seats = cached.(map[string]bool)
	}
	if !ok || len(missingFrom(seats, labels)) > 0 {
		all, err := l.store.SeatLabels(ctx, screenID)
		if err != nil {
			return nil, err
		}
		if seats = labelSet(all); len(seats) > 0 {
			l.screens.Store(screenID, seats)
		}
	}
	return missingFrom(seats, labels), nil
}
