package payment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lib/pq"
	"golang.org/x/sync/errgroup"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// errNotBatchable sends a batch down the careful path, one event at a time: an expired hold, a
// booking twice, a charge already under way, anything a bulk charge should not guess about.
var errNotBatchable = errors.New("not for a bulk charge")

// chargesAtOnce bounds the processor calls a batch has open at a time: a real processor answers
// in tens of milliseconds, and waiting for them one after another is what made payment the
// queue of the pipeline.
const chargesAtOnce = 8

// HandleConfirmedBatch charges the confirmed bookings fetched together. One at a time, each costs
// three commits in a row (open the row, the processor's call, the outcome); here the rows are
// opened in one statement, the processor is asked for all the charges at once (one request
// where it takes a batch, concurrent calls where not), and the outcomes are recorded in one
// statement. Each step is one that HandleSeatsConfirmed takes and is safe to repeat, so when
// anything is out of the ordinary the batch returns an error after any step and the consumer
// handles the events one at a time: the rows already opened are found open, and the processor
// answers a repeated charge with its first answer (the booking id is the idempotency key), so
// no card is charged twice.
func (s *Service) HandleConfirmedBatch(ctx context.Context, batch []kafka.Delivery) error {
	ctx = kafka.WithTrace(ctx, batch[0].Trace) // the batch's own work, in the trace of its first event
	now := s.now()
	charges := make([]*charge, 0, len(batch))
	ids := make([]string, 0, len(batch))
	for _, d := range batch {
		if d.Envelope.Type != event.TypeSeatsConfirmed {
			return fmt.Errorf("%w: a %s event", errNotBatchable, d.Envelope.Type)
		}
		var c event.SeatsConfirmed
		if err := d.Envelope.Decode(&c); err != nil {
			return err
		}
		if !c.HoldExpiresAt.IsZero() && !now.Before(c.HoldExpiresAt) {
			return fmt.Errorf("%w: the hold of %s ran out before it was read", errNotBatchable, d.Envelope.BookingID)
		}
		if slices.Contains(ids, d.Envelope.BookingID) {
			return fmt.Errorf("%w: booking %s twice", errNotBatchable, d.Envelope.BookingID)
		}
		charges = append(charges, &charge{delivery: d, c: c})
		ids = append(ids, d.Envelope.BookingID)
	}

	openings := make([]opening, len(charges))
	for i, ch := range charges {
		openings[i] = opening{ch.delivery.Envelope.BookingID, ch.c.Booking, ch.c.Card}
	}
	statuses, err := s.openAll(ctx, openings)
	if err != nil {
		return err
	}
	// A row found in any status but 'charging' is an earlier delivery's: decided already, or
	// taken over by an expiry. The careful path knows what each needs; openAll opened none.
	for id, st := range statuses {
		if st != statusCharging {
			return fmt.Errorf("%w: the payment of %s is %s already", errNotBatchable, id, st)
		}
	}
	for _, ch := range charges {
		if statuses[ch.delivery.Envelope.BookingID] != statusCharging {
			return fmt.Errorf("%w: the payment of %s was not opened", errNotBatchable, ch.delivery.Envelope.BookingID)
		}
	}

	if err := s.chargeAll(ctx, charges); err != nil {
		return err
	}

	outcomes := make([]outcome, 0, len(charges))
	for _, ch := range charges {
		env, c, r := ch.delivery.Envelope, ch.c, ch.result
		if r.Approved && !c.HoldExpiresAt.IsZero() && !ch.answeredAt.Before(c.HoldExpiresAt) {
			// Approved after the hold ran out: refunded, by the careful path.
			return fmt.Errorf("%w: the charge of %s was approved after its hold ran out", errNotBatchable, env.BookingID)
		}
		o := outcome{cause: env, trace: ch.delivery.Trace, chargeRef: r.Reference}
		if r.Approved {
			o.status, o.eventType = statusSucceeded, event.TypePaymentSucceeded
			o.payload = event.PaymentSucceeded{Booking: c.Booking, PaymentID: r.Reference, CardBrand: c.Card.Brand, CardLast4: c.Card.Last4}
		} else {
			o.status, o.eventType = statusFailed, event.TypePaymentFailed
			o.payload = event.PaymentFailed{Booking: c.Booking, Code: r.DeclineCode, Reason: r.DeclineReason, CardBrand: c.Card.Brand, CardLast4: c.Card.Last4}
		}
		outcomes = append(outcomes, o)
	}
	return s.finishAll(ctx, outcomes)
}

// charge is one confirmed booking of a batch, and the processor's answer to its charge.
type charge struct {
	delivery   kafka.Delivery
	c          event.SeatsConfirmed
	result     gateway.ChargeResult
	answeredAt time.Time // when the processor answered: was the hold still on?
}

// chargeAll asks the processor for the batch's charges: in one request where it takes them
// together, else chargesAtOnce at a time.
func (s *Service) chargeAll(ctx context.Context, charges []*charge) error {
	if batcher, ok := s.processor.(gateway.BatchCharger); ok {
		reqs := make([]gateway.ChargeRequest, len(charges))
		for i, ch := range charges {
			reqs[i] = chargeRequest(ch.delivery.Envelope.BookingID, ch.c.Card, ch.c.Booking)
		}
		// Each approval is judged by when it was given, not by when the slowest of the batch was.
		answeredAt := make([]time.Time, len(reqs))
		results, err := batcher.ChargeAll(ctx, reqs, func(i int) { answeredAt[i] = s.now() })
		if err != nil {
			return fmt.Errorf("charge a batch of %d: %w", len(charges), err)
		}
		if len(results) != len(reqs) {
			return fmt.Errorf("charge a batch of %d: the processor answered %d", len(reqs), len(results))
		}
		returned := s.now()
		for i, ch := range charges {
			ch.result, ch.answeredAt = results[i], answeredAt[i]
			if ch.answeredAt.IsZero() {
				ch.answeredAt = returned // a processor that does not say: the call's own end
			}
		}
		return nil
	}
	var calls errgroup.Group
	calls.SetLimit(chargesAtOnce)
	for _, ch := range charges {
		calls.Go(func() (err error) {
			ch.result, err = s.processor.Charge(kafka.WithTrace(ctx, ch.delivery.Trace),
				chargeRequest(ch.delivery.Envelope.BookingID, ch.c.Card, ch.c.Booking))
			ch.answeredAt = s.now()
			return err
		})
	}
	if err := calls.Wait(); err != nil {
		return fmt.Errorf("charge a batch of %d: %w", len(charges), err)
	}
	return nil
}

// opening is a charge about to be made.
type opening struct {
	bookingID string
	booking   event.BookingDetails
	card      event.Card
}

// openAll is open for many bookings in one statement: it records that their charges are about
// to be made, unless a booking's payment has a row already, and returns each row's status by
// booking id (as PostgreSQL writes a uuid). If any booking's payment is past 'charging' it opens
// none, and returns the statuses of those: a refused batch must leave no row open that deciding
// one by one would not have opened (an open row is charged, and refunded, when its hold runs out
// where a booking without one fails uncharged).
func (s *Service) openAll(ctx context.Context, openings []opening) (map[string]string, error) {
	// In the order of their booking ids, so two batches sharing bookings (members' fetches
	// mixing during a rebalance) cannot wait on each other.
	openings = slices.SortedFunc(slices.Values(openings), func(a, b opening) int { return strings.Compare(a.bookingID, b.bookingID) })
	n := len(openings)
	ids, currencies, brands, last4s, tokens := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amounts := make([]int64, n)
	for i, o := range openings {
		ids[i], amounts[i], currencies[i], brands[i], last4s[i], tokens[i] = o.bookingID, o.booking.AmountCents, o.booking.Currency, o.card.Brand, o.card.Last4, o.card.Token
	}
	var rows []struct {
		BookingID string `db:"booking_id"`
		Status    string `db:"status"`
	}
	// The no-op update makes an existing row come back too, as open's does. A booking's events
	// are read in order by one member, so no other handler decides its row meanwhile.
	err := prepared.Select(ctx, s.db, &rows, `WITH decided AS (
			SELECT booking_id, status FROM payment.payments WHERE booking_id = ANY($1::uuid[]) AND status <> 'charging'
		), opened AS (
			INSERT INTO payment.payments (booking_id, amount_cents, currency, card_brand, card_last4, card_token, status)
			SELECT id, amount, currency, brand, last4, token, 'charging'
			FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS o (id, amount, currency, brand, last4, token)
			WHERE NOT EXISTS (SELECT 1 FROM decided)
			ON CONFLICT (booking_id) DO UPDATE SET updated_at = payment.payments.updated_at
			RETURNING booking_id, status
		)
		SELECT booking_id::text, status FROM opened UNION ALL SELECT booking_id::text, status FROM decided`,
		pq.Array(ids), pq.Array(amounts), pq.Array(currencies), pq.Array(brands), pq.Array(last4s), pq.Array(tokens))
	if err != nil {
		return nil, fmt.Errorf("open %d payments: %w", n, err)
	}
	statuses := make(map[string]string, len(rows))
	for _, r := range rows {
		statuses[r.BookingID] = r.Status
	}
	return statuses, nil
}

// outcome is one payment's decision, as finishAll records it.
type outcome struct {
	cause     event.Envelope
	trace     string
	status    string // succeeded or failed
	chargeRef string
	eventType string
	payload   any // event.PaymentSucceeded or event.PaymentFailed
}

// finishAll is finish for many charges in one statement: each payment still 'charging' takes its
// outcome, and for those, the cause goes into the inbox and the outcome event into the outbox.
// A payment no longer 'charging' was decided by someone else, whose decision stands (as in
// finish).
func (s *Service) finishAll(ctx context.Context, outcomes []outcome) error {
	n := len(outcomes)
	ids, statuses, refs, codes, failures, events, causes := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	envelopes := make(map[string]event.Envelope, n)
	for i, o := range outcomes {
		env, raw, err := s.newOutcome(kafka.WithTrace(ctx, o.trace), o.cause.BookingID, o.eventType, o.payload)
		if err != nil {
			return err
		}
		envelopes[o.cause.BookingID] = env
		if f, ok := o.payload.(event.PaymentFailed); ok {
			codes[i], failures[i] = f.Code, f.Reason
		}
		ids[i], statuses[i], refs[i], events[i], causes[i] = o.cause.BookingID, o.status, o.chargeRef, string(raw), o.cause.ID
	}
	// Each payment won, with its queued outcome's outbox row, in the order queued.
	var won []struct {
		BookingID string `db:"booking_id"`
		Queued    int64  `db:"queued"`
	}
	err := prepared.Select(ctx, s.db, &won, `WITH outcome AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[])
				WITH ORDINALITY AS o (booking_id, status, gateway_ref, failure_code, failure, outcome_event, cause, n)
		), won AS (
			UPDATE payment.payments p
			SET status = o.status, gateway_ref = o.gateway_ref, failure_code = o.failure_code, failure = o.failure,
				outcome_event = o.outcome_event, updated_at = now()
			FROM outcome o WHERE p.booking_id = o.booking_id::uuid AND p.booking_id = ANY($1::uuid[]) AND p.status = 'charging'
			RETURNING o.booking_id
		), recorded AS (
			INSERT INTO `+InboxTable+` (event_id) SELECT o.cause FROM outcome o JOIN won USING (booking_id)
			ON CONFLICT (event_id) DO NOTHING
		), queued AS (
			INSERT INTO `+OutboxTable+` (topic, key, envelope)
			SELECT $8, o.booking_id, o.outcome_event FROM outcome o JOIN won USING (booking_id) ORDER BY o.n
			RETURNING id, key
		)
		SELECT key AS booking_id, id AS queued FROM queued ORDER BY id`,
		pq.Array(ids), pq.Array(statuses), pq.Array(refs), pq.Array(codes), pq.Array(failures), pq.Array(events), pq.Array(causes),
		event.TopicPayment)
	if err != nil {
		return fmt.Errorf("record %d payments: %w", n, err)
	}
	decided := make(map[string]bool, len(won))
	queuedIDs, queued := make([]int64, len(won)), make([]kafka.Message, len(won))
	for i, w := range won {
		decided[w.BookingID] = true
		queuedIDs[i], queued[i] = w.Queued, kafka.Message{Topic: event.TopicPayment, Key: w.BookingID, Envelope: envelopes[w.BookingID]}
	}
	s.relay.Committed(queuedIDs, queued)
	for i, o := range outcomes {
		if decided[o.cause.BookingID] {
			s.log.InfoContext(kafka.WithTrace(ctx, o.trace), "payment "+o.status, "booking_id", o.cause.BookingID, "code", codes[i], "batch", n)
		}
	}
	return nil
}
