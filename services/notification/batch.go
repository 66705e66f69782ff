package notification

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lib/pq"
	"golang.org/x/sync/errgroup"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/notification/sms"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// errNotBatchable sends a batch down the careful path, one event at a time: a text sent before,
// a contact not read yet, a booking twice.
var errNotBatchable = errors.New("not for a bulk send")

// sendsAtOnce bounds the provider calls a batch has open at a time.
const sendsAtOnce = 8

// HandleContactsBatch is HandleBookingRequested for the requests fetched together, in one
// statement.
func (s *Service) HandleContactsBatch(ctx context.Context, batch []kafka.Delivery) error {
	ids, names, phones := make([]string, 0, len(batch)), make([]string, 0, len(batch)), make([]string, 0, len(batch))
	for _, d := range batch {
		if d.Envelope.Type != event.TypeBookingRequested {
			return fmt.Errorf("%w: a %s event", errNotBatchable, d.Envelope.Type)
		}
		var req event.BookingRequested
		if err := d.Envelope.Decode(&req); err != nil {
			return err
		}
		ids, names, phones = append(ids, d.Envelope.BookingID), append(names, req.CustomerName), append(phones, req.Phone)
	}
	// A booking id seen twice (a redelivery) keeps its first contact, as one by one.
	if _, err := prepared.Exec(ctx, s.db, `INSERT INTO notification.contacts (booking_id, customer_name, phone)
		SELECT id::uuid, name, phone FROM unnest($1::text[], $2::text[], $3::text[]) AS c (id, name, phone)
		ON CONFLICT (booking_id) DO NOTHING`, pq.Array(ids), pq.Array(names), pq.Array(phones)); err != nil {
		return fmt.Errorf("record %d contacts: %w", len(batch), err)
	}
	return nil
}

// HandlePaymentBatch texts the customers of the payment outcomes fetched together: one lookup
// for them all, the provider asked for all the texts at once (one request where it takes a
// batch, concurrent calls where not), and one statement recording them, where one at a time
// each costs three round trips and a commit in a row. The steps are notify's, so when anything
// is out of the ordinary the batch returns an error and the consumer handles the events one at
// a time; a text already sent in the batch is sent again with the same idempotency key, and the
// provider delivers nothing new. (The batch request goes under the trace of the batch's first
// event; each outcome keeps its own booking's trace.)
func (s *Service) HandlePaymentBatch(ctx context.Context, batch []kafka.Delivery) error {
	ctx = kafka.WithTrace(ctx, batch[0].Trace) // the batch's own work, in the trace of its first event
	envs := make([]event.Envelope, 0, len(batch))
	texts := make([]text, 0, len(batch))
	kinds := make([]string, 0, len(batch))
	for _, d := range batch {
		var t text
		switch d.Envelope.Type {
		case event.TypePaymentSucceeded:
			var p event.PaymentSucceeded
			if err := d.Envelope.Decode(&p); err != nil {
				return err
			}
			t = succeededText(p)
		case event.TypePaymentFailed:
			var p event.PaymentFailed
			if err := d.Envelope.Decode(&p); err != nil {
				return err
			}
			t = failedText(p)
		default:
			return fmt.Errorf("%w: a %s event", errNotBatchable, d.Envelope.Type)
		}
		if slices.ContainsFunc(envs, func(e event.Envelope) bool { return e.BookingID == d.Envelope.BookingID }) {
			return fmt.Errorf("%w: booking %s twice", errNotBatchable, d.Envelope.BookingID)
		}
		envs, texts, kinds = append(envs, d.Envelope), append(texts, t), append(kinds, t.kind)
	}
	known, err := s.lookUp(ctx, envs, kinds)
	if err != nil {
		return err
	}
	for i, k := range known {
		if k.Done || !k.Phone.Valid {
			return fmt.Errorf("%w: booking %s's text is sent already, or its contact not read yet", errNotBatchable, envs[i].BookingID)
		}
	}

	sent, err := s.sendAll(ctx, batch, envs, texts, known)
	if err != nil {
		return err
	}
	return s.record(ctx, sent)
}

// sendAll sends the batch's texts: in one request where the provider takes them together, else
// sendsAtOnce at a time.
func (s *Service) sendAll(ctx context.Context, batch []kafka.Delivery, envs []event.Envelope, texts []text, known []contactState) ([]sentText, error) {
	sent := make([]sentText, len(envs))
	if batcher, ok := s.sender.(sms.BatchSender); ok {
		msgs := make([]sms.Message, len(envs))
		for i := range envs {
			msgs[i] = smsFor(envs[i], texts[i], known[i].Phone.String)
		}
		receipts, err := batcher.SendAll(ctx, msgs)
		if err == nil && len(receipts) != len(msgs) {
			err = fmt.Errorf("the provider answered %d", len(receipts))
		}
		if err != nil {
			return nil, fmt.Errorf("send a batch of %d: %w", len(msgs), err)
		}
		for i, r := range receipts {
			var refused error
			if r.Refused != nil {
				refused = r.Refused
			}
			if sent[i], err = s.sent(kafka.WithTrace(ctx, batch[i].Trace), envs[i], texts[i], r.ProviderID, refused); err != nil {
				return nil, err
			}
		}
		return sent, nil
	}
	var sends errgroup.Group
	sends.SetLimit(sendsAtOnce)
	for i := range envs {
		sends.Go(func() (err error) {
			sent[i], err = s.send(kafka.WithTrace(ctx, batch[i].Trace), envs[i], texts[i], known[i].Phone.String)
			return err
		})
	}
	if err := sends.Wait(); err != nil {
		return nil, fmt.Errorf("send a batch of %d: %w", len(envs), err)
	}
	return sent, nil
}
