package notification_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/notification"
	"github.com/boxoffice/boxoffice/services/notification/sms"
	"github.com/boxoffice/boxoffice/services/outbox"
)

// TestOneTextPerOutcome: a payment outcome handled before its contact is known is retried
// (an error, nothing sent); once known, redeliveries send one text and announce one outcome.
func TestOneTextPerOutcome(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	inbox := sms.NewSandbox(conn, time.Now)
	svc := notification.NewService(conn, inbox, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	bookingID := uuid.NewString()
	paid := event.PaymentSucceeded{Booking: event.BookingDetails{MovieTitle: "Orbital Decay", TheatreName: "Boxoffice Bankside",
		ScreenNumber: 1, StartsAt: time.Date(2026, 11, 27, 19, 30, 0, 0, time.UTC), Timezone: "Europe/London", Seats: []string{"F7", "F8"}}}
	env, _ := event.New(event.TypePaymentSucceeded, bookingID, paid, time.Now())

	if err := svc.HandlePaymentSucceeded(ctx, env, paid); err == nil || len(queued(t, conn)) != 0 {
		t.Fatalf("without a contact: err %v; want an error to retry and nothing queued", err)
	}
	req, _ := event.New(event.TypeBookingRequested, bookingID, event.BookingRequested{Phone: "+447700900123"}, time.Now())
	if err := svc.HandleBookingRequested(ctx, req, event.BookingRequested{Phone: "+447700900123"}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := svc.HandlePaymentSucceeded(ctx, env, paid); err != nil {
			t.Fatal(err)
		}
	}
	texts, err := inbox.Inbox(ctx, "+447700900123", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) != 1 || !strings.Contains(texts[0].Body, "Orbital Decay") || !strings.Contains(texts[0].Body, "Fri 27 Nov 19:30") {
		t.Errorf("inbox %+v, want one confirmation naming the film and the local time", texts)
	}
	msgs := queued(t, conn)
	if len(msgs) != 1 || msgs[0].Envelope.Type != event.TypeNotificationSent || msgs[0].Key != bookingID {
		t.Fatalf("queued %v, want one delivered outcome keyed by booking", msgs)
	}
	var result event.NotificationResult
	if err := msgs[0].Envelope.Decode(&result); err != nil || !result.Paid || result.MessageID != texts[0].ID {
		t.Errorf("outcome %+v (%v)", result, err)
	}
}

// TestProviderOutageIsRetriedRefusalIsAnOutcome: a provider that cannot be reached is retried;
// one that refuses the number produces a "failed" outcome so the ticket is not held up.
func TestProviderOutageIsRetriedRefusalIsAnOutcome(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	sender := &scriptedSender{errs: []error{errors.New("provider timeout"), &sms.DeliveryError{Reason: "Not a mobile number."}}}
	svc := notification.NewService(conn, sender, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	bookingID := uuid.NewString()
	req, _ := event.New(event.TypeBookingRequested, bookingID, event.BookingRequested{Phone: "+441"}, time.Now())
	_ = svc.HandleBookingRequested(ctx, req, event.BookingRequested{Phone: "+441"})
	paid := event.PaymentSucceeded{}
	env, _ := event.New(event.TypePaymentSucceeded, bookingID, paid, time.Now())
	if err := svc.HandlePaymentSucceeded(ctx, env, paid); err == nil {
		t.Fatal("a provider timeout was swallowed")
	}
	if err := svc.HandlePaymentSucceeded(ctx, env, paid); err != nil {
		t.Fatal(err)
	}
	var result event.NotificationResult
	msgs := queued(t, conn)
	if len(msgs) != 1 || msgs[0].Envelope.Type != event.TypeNotificationFailed || msgs[0].Envelope.Decode(&result) != nil ||
		!result.Paid || result.Error != "Not a mobile number." {
		t.Errorf("queued %v, want one 'failed' outcome for a paid booking with the provider's reason", msgs)
	}
}

func queued(t *testing.T, conn *sqlx.DB) []kafka.Message {
	t.Helper()
	msgs, err := outbox.Pending(context.Background(), conn, notification.OutboxTable)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

type scriptedSender struct{ errs []error }

func (s *scriptedSender) Send(context.Context, sms.Message) (string, error) {
	err := s.errs[0]
	s.errs = s.errs[1:]
	return "", err
}
