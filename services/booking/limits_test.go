package booking_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// newLimitedService is newService with seat caps.
func newLimitedService(t testing.TB, limits booking.SeatLimits) (*booking.Service, *sqlx.DB) {
	t.Helper()
	conn := dbtest.NewMigrated(t, func(ctx context.Context, d *sqlx.DB) error { return catalog.Seed(ctx, d, now, false) })
	return booking.NewService(conn, nil, 0, limits, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil))), conn
}

// buyer is who asks, as the web names them: opaque keys, and a card's fingerprint.
type buyer struct{ session, address, phone, card string }

func (b buyer) asks(t *testing.T, seats ...string) kafka.Delivery {
	t.Helper()
	req := event.BookingRequested{ShowID: show, Seats: seats, CustomerName: "Ada", Phone: "+447700900123",
		Card:  event.Card{Brand: "visa", Last4: "4242", Token: "tok_" + uuid.NewString(), Fingerprint: b.card},
		Buyer: event.Buyer{Session: b.session, Address: b.address, Phone: b.phone}}
	env, err := event.New(event.TypeBookingRequested, uuid.NewString(), req, now)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Delivery{Envelope: env, Trace: kafka.NextSpan("")}
}

// decideEach decides requests one at a time, as the consumer's careful path does.
func decideEach(t *testing.T, svc *booking.Service, requests ...kafka.Delivery) {
	t.Helper()
	for _, d := range requests {
		var req event.BookingRequested
		if err := d.Envelope.Decode(&req); err != nil {
			t.Fatal(err)
		}
		if err := svc.HandleRequested(context.Background(), d.Envelope, req); err != nil {
			t.Fatal(err)
		}
	}
}

// decideTogether decides requests in one batch, as the consumer does what it fetched together.
func decideTogether(t *testing.T, svc *booking.Service, requests ...kafka.Delivery) {
	t.Helper()
	if err := svc.HandleRequestedBatch(context.Background(), requests); err != nil {
		t.Fatalf("batch refused: %v", err)
	}
}

// decision is a booking's outcome as queued: "confirmed", or "rejected <code>: <reason>".
func decisions(t *testing.T, conn *sqlx.DB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range queued(t, conn) {
		switch m.Envelope.Type {
		case event.TypeSeatsConfirmed:
			var c event.SeatsConfirmed
			if err := m.Envelope.Decode(&c); err != nil {
				t.Fatal(err)
			}
			if c.Card.Fingerprint != "" {
				t.Errorf("the confirmation of %s carries the card's fingerprint on to payment", m.Key)
			}
			out[m.Key] = "confirmed"
		case event.TypeBookingRejected:
			var r event.BookingRejected
			if err := m.Envelope.Decode(&r); err != nil {
				t.Fatal(err)
			}
			out[m.Key] = "rejected " + r.Code + ": " + r.Reason
		}
	}
	return out
}

func seats(row string, from, to int) []string {
	var out []string
	for n := from; n <= to; n++ {
		out = append(out, fmt.Sprintf("%s%d", row, n))
	}
	return out
}

// TestSeatCapsStopOneBuyerTakingAShow: with 10 seats a buyer and 20 an address, a buyer
// holding 8 seats of a show is refused 3 more — by its session, its phone or its card, whichever
// the request shares — while another buyer gets those very seats; the buyer may still take 2;
// an address holding 20 is refused one more. One at a time and in one batch (where the batch's
// earlier requests count) decide alike.
func TestSeatCapsStopOneBuyerTakingAShow(t *testing.T) {
	ada := buyer{"session-ada", "address-x", "phone-ada", "card-ada"}
	for _, path := range []struct {
		name   string
		decide func(*testing.T, *booking.Service, ...kafka.Delivery)
	}{{"one at a time", decideEach}, {"in one batch", decideTogether}} {
		t.Run(path.name, func(t *testing.T) {
			svc, conn := newLimitedService(t, booking.SeatLimits{PerBuyer: 10, PerAddress: 20})
			steps := []struct {
				what    string
				request kafka.Delivery
				want    string // "confirmed", or the start of the rejection
			}{
				{"Ada takes 8", ada.asks(t, seats("A", 1, 8)...), "confirmed"},
				{"Ada asks 3 more", ada.asks(t, seats("B", 1, 3)...),
					"rejected seat_limit: One buyer can book at most 10 seats for one show, and this browser already has 8: choose at most 2 more."},
				{"Bob takes those 3", buyer{"session-bob", "address-y", "phone-bob", "card-bob"}.asks(t, seats("B", 1, 3)...), "confirmed"},
				{"Ada's phone in another browser", buyer{"session-2", "address-z", "phone-ada", "card-2"}.asks(t, seats("C", 1, 3)...),
					"rejected seat_limit: One buyer can book at most 10 seats for one show, and this phone number already has 8"},
				{"Ada's card with another phone", buyer{"session-3", "address-w", "phone-3", "card-ada"}.asks(t, seats("C", 1, 3)...),
					"rejected seat_limit: One buyer can book at most 10 seats for one show, and this card already has 8"},
				{"Ada takes her last 2", ada.asks(t, "C1", "C2"), "confirmed"},
				{"Ada asks one more", ada.asks(t, "C3"),
					"rejected seat_limit: One buyer can book at most 10 seats for one show, and this browser already has 10. For a larger group, ask at the box office."},
				{"Carol at Ada's address takes 10", buyer{"session-carol", "address-x", "phone-carol", "card-carol"}.asks(t, seats("D", 1, 10)...), "confirmed"},
				{"Dan at that address asks 1", buyer{"session-dan", "address-x", "phone-dan", "card-dan"}.asks(t, "E1"),
					"rejected seat_limit: At most 20 seats for one show can be booked from one network address, and yours already has 20."},
			}
			var requests []kafka.Delivery
			for _, s := range steps {
				requests = append(requests, s.request)
			}
			path.decide(t, svc, requests...)

			got := decisions(t, conn)
			for _, s := range steps {
				if d := got[s.request.Envelope.BookingID]; !strings.HasPrefix(d, s.want) {
					t.Errorf("%s: %q, want %q", s.what, d, s.want)
				}
			}
			var held []string
			if err := conn.Select(&held, `SELECT seat_label FROM booking.held_seats ORDER BY seat_label`); err != nil {
				t.Fatal(err)
			}
			if want := 8 + 3 + 2 + 10; len(held) != want {
				t.Errorf("%d seats held (%v), want %d: nothing of the rejected requests", len(held), held, want)
			}
		})
	}
}

// TestReleasedSeatsNoLongerCount: a buyer's paid seats count against its cap, but the seats of
// a booking whose payment failed were released and no longer do, one at a time or in a batch.
func TestReleasedSeatsNoLongerCount(t *testing.T) {
	ctx := context.Background()
	ada := buyer{"session-ada", "address-x", "phone-ada", "card-ada"}
	svc, conn := newLimitedService(t, booking.SeatLimits{PerBuyer: 10, PerAddress: 20})

	paid, failed := ada.asks(t, "A1", "A2"), ada.asks(t, seats("B", 1, 8)...)
	decideEach(t, svc, paid, failed)
	succeeded, _ := event.New(event.TypePaymentSucceeded, paid.Envelope.BookingID, event.PaymentSucceeded{}, now)
	if err := svc.HandlePaymentSucceeded(ctx, succeeded, event.PaymentSucceeded{}); err != nil {
		t.Fatal(err)
	}
	refused := ada.asks(t, "C1")
	decideEach(t, svc, refused)
	if d := decisions(t, conn)[refused.Envelope.BookingID]; !strings.HasPrefix(d, "rejected seat_limit") {
		t.Fatalf("a buyer with 10 seats held (2 paid) asking one more: %q, want a seat_limit rejection", d)
	}

	declined := event.PaymentFailed{Code: "card_declined", Reason: "Your card was declined."}
	failure, _ := event.New(event.TypePaymentFailed, failed.Envelope.BookingID, declined, now)
	if err := svc.HandlePaymentFailed(ctx, failure, declined); err != nil {
		t.Fatal(err)
	}
	alone, batched := ada.asks(t, seats("C", 1, 4)...), ada.asks(t, seats("D", 1, 4)...)
	decideEach(t, svc, alone)
	decideTogether(t, svc, batched)
	got := decisions(t, conn)
	if got[alone.Envelope.BookingID] != "confirmed" || got[batched.Envelope.BookingID] != "confirmed" {
		t.Errorf("after the failed booking's 8 seats were released: %q one at a time and %q in a batch, want both confirmed (2+4+4 seats)",
			got[alone.Envelope.BookingID], got[batched.Envelope.BookingID])
	}
	over := ada.asks(t, "E1")
	decideTogether(t, svc, over)
	if d := decisions(t, conn)[over.Envelope.BookingID]; !strings.HasPrefix(d, "rejected seat_limit") {
		t.Errorf("then one more seat: %q, want a seat_limit rejection", d)
	}
}

// TestSeatCapsCanBeTurnedOff: a cap of 0 is none (load tests book thousands of seats from one
// address with one card), and a request that names no buyer (an event from before the caps) is
// not capped.
func TestSeatCapsCanBeTurnedOff(t *testing.T) {
	ada := buyer{"session-ada", "address-x", "phone-ada", "card-ada"}
	for _, tc := range []struct {
		name   string
		limits booking.SeatLimits
		who    buyer
	}{
		{"both off", booking.SeatLimits{}, ada},
		{"per buyer off, under the address cap", booking.SeatLimits{PerAddress: 40}, ada},
		{"per address off, a buyer changing everything but the address", booking.SeatLimits{PerBuyer: 10}, buyer{address: "address-x"}},
		{"no buyer named", booking.SeatLimits{PerBuyer: 10, PerAddress: 20}, buyer{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, conn := newLimitedService(t, tc.limits)
			var requests []kafka.Delivery
			for _, row := range []string{"A", "B", "C"} {
				requests = append(requests, tc.who.asks(t, seats(row, 1, 10)...))
			}
			decideEach(t, svc, requests[0])
			decideTogether(t, svc, requests[1:]...)
			for _, r := range requests {
				if d := decisions(t, conn)[r.Envelope.BookingID]; d != "confirmed" {
					t.Errorf("%s: %q, want confirmed", r.Envelope.BookingID, d)
				}
			}
		})
	}
}
