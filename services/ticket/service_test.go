package ticket_test

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/ticket"
)

func TestOneTicketPerPaidBooking(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	svc := ticket.NewService(conn, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	details := event.BookingDetails{ShowID: "s", MovieTitle: "Orbital Decay", TheatreName: "Boxoffice Bankside",
		TheatreLocation: "21 Sumner Street, SE1 9JZ, London", ScreenNumber: 1, StartsAt: time.Now().Add(time.Hour),
		Seats: []string{"F7"}, AmountCents: 1395, Currency: "GBP", CustomerName: "Ada"}

	paid, _ := event.New(event.TypeNotificationSent, uuid.NewString(), event.NotificationResult{Booking: details, Paid: true}, time.Now())
	for range 3 {
		if err := svc.HandleNotification(ctx, paid, event.NotificationResult{Booking: details, Paid: true}); err != nil {
			t.Fatal(err)
		}
	}
	// The same booking announced again by a different event (its notification sent twice): still
	// one ticket, announced once.
	again, _ := event.New(event.TypeNotificationSent, paid.BookingID, event.NotificationResult{Booking: details, Paid: true}, time.Now())
	if err := svc.HandleNotification(ctx, again, event.NotificationResult{Booking: details, Paid: true}); err != nil {
		t.Fatal(err)
	}
	unpaid, _ := event.New(event.TypeNotificationSent, uuid.NewString(), event.NotificationResult{Booking: details}, time.Now())
	if err := svc.HandleNotification(ctx, unpaid, event.NotificationResult{Booking: details}); err != nil {
		t.Fatal(err)
	}
	var tickets int
	if err := conn.Get(&tickets, `SELECT count(*) FROM ticket.tickets`); err != nil || tickets != 1 {
		t.Fatalf("%d tickets (err %v), want 1: one for the paid booking, none for the unpaid", tickets, err)
	}
	queued, err := outbox.Pending(ctx, conn, ticket.OutboxTable)
	if err != nil {
		t.Fatal(err)
	}
	if len(queued) != 1 || queued[0].Topic != event.TopicTicketDetails || queued[0].Key != paid.BookingID {
		t.Fatalf("queued %d messages, want the one ticket-details event keyed by booking", len(queued))
	}
	var issued event.TicketIssued
	if err := queued[0].Envelope.Decode(&issued); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[2-9A-HJKMNP-Z]{3}-[2-9A-HJKMNP-Z]{4}$`).MatchString(issued.Code) || issued.BookedUnder != "Ada" || issued.TheatreLocation == "" {
		t.Errorf("ticket %+v", issued)
	}
}

// TestBatchIssuesOneTicketPerPaidBooking: notifications fetched together issue their tickets in
// one statement: one per paid booking, even when a booking's notification comes twice in the
// batch, none for an unpaid one, and nothing more when the batch is delivered again.
func TestBatchIssuesOneTicketPerPaidBooking(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	svc := ticket.NewService(conn, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	details := event.BookingDetails{ShowID: "s", MovieTitle: "Orbital Decay", TheatreName: "Boxoffice Bankside",
		TheatreLocation: "21 Sumner Street, SE1 9JZ, London", ScreenNumber: 3, StartsAt: time.Now().Add(time.Hour),
		Seats: []string{"F7", "F8"}, AmountCents: 2790, Currency: "GBP", CustomerName: "Ada"}
	notification := func(bookingID string, paid bool) kafka.Delivery {
		env, _ := event.New(event.TypeNotificationSent, bookingID, event.NotificationResult{Booking: details, Paid: paid}, time.Now())
		return kafka.Delivery{Envelope: env, Trace: kafka.NextSpan("")}
	}
	a, unpaid, c := notification(uuid.NewString(), true), notification(uuid.NewString(), false), notification(uuid.NewString(), true)
	batch := []kafka.Delivery{a, unpaid, c, notification(a.Envelope.BookingID, true)}
	for range 2 {
		if err := svc.HandleNotificationBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	queued, err := outbox.Pending(ctx, conn, ticket.OutboxTable)
	if err != nil {
		t.Fatal(err)
	}
	var tickets int
	if err := conn.Get(&tickets, `SELECT count(*) FROM ticket.tickets`); err != nil || tickets != 2 || len(queued) != 2 {
		t.Fatalf("%d tickets and %d events queued (err %v); want one each for the two paid bookings", tickets, len(queued), err)
	}
	for i, want := range []string{a.Envelope.BookingID, c.Envelope.BookingID} {
		var issued event.TicketIssued
		if err := queued[i].Envelope.Decode(&issued); err != nil {
			t.Fatal(err)
		}
		var stored struct {
			Code  string `db:"code"`
			Seats string `db:"seats"`
		}
		if err := conn.Get(&stored, `SELECT code, array_to_string(seats, ' ') AS seats FROM ticket.tickets WHERE booking_id = $1`, want); err != nil {
			t.Fatal(err)
		}
		if queued[i].Key != want || queued[i].Topic != event.TopicTicketDetails || issued.Code != stored.Code ||
			stored.Seats != "F7 F8" || issued.ScreenNumber != 3 || issued.BookedUnder != "Ada" {
			t.Errorf("event %d: key %s, ticket %+v, stored %+v; want booking %s's ticket as stored", i, queued[i].Key, issued, stored, want)
		}
	}
}
