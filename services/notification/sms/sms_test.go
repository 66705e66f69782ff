package sms_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/notification/sms"
)

// TestSandboxDeliversOncePerKey: a resend after a crash (same key) puts nothing new in the inbox.
func TestSandboxDeliversOncePerKey(t *testing.T) {
	sandbox := sms.NewSandbox(dbtest.NewMigrated(t, nil), time.Now)
	ctx := context.Background()
	msg := sms.Message{Key: "booking-1/booking_confirmed", Phone: "+447700900123", Body: "You're booked."}
	first, err := sandbox.Send(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sandbox.Send(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	other, err := sandbox.Send(ctx, sms.Message{Key: "booking-2/booking_confirmed", Phone: msg.Phone, Body: "Also booked."})
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := sandbox.Inbox(ctx, msg.Phone, 10)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || other == first || len(inbox) != 2 || inbox[0].ID != other {
		t.Errorf("ids %s %s %s, inbox %+v: want the resend to return the first id and the newest first", first, again, other, inbox)
	}
}

func TestSandboxRefusesUndeliverableNumbers(t *testing.T) {
	sandbox := sms.NewSandbox(dbtest.NewMigrated(t, nil), time.Now)
	_, err := sandbox.Send(context.Background(), sms.Message{Key: "k", Phone: "+44 7700 900000", Body: "x"})
	var refused *sms.DeliveryError
	if !errors.As(err, &refused) || refused.Reason == "" {
		t.Errorf("err %v, want a DeliveryError with a reason", err)
	}
}
