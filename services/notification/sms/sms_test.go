package sms_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// TestSandboxSendAllDeliversAsSendWould: each message of a batch is answered as Send answers
// it: delivered once per key (a key sent before keeps its first id, a key twice in the batch is
// one text), an undeliverable number refused with a reason; a repeat of the batch puts nothing
// new in the inbox.
func TestSandboxSendAllDeliversAsSendWould(t *testing.T) {
	sandbox := sms.NewSandbox(dbtest.NewMigrated(t, nil), time.Now)
	ctx := context.Background()
	phone := "+447700900123"
	before, err := sandbox.Send(ctx, sms.Message{Key: "sent-before", Phone: phone, Body: "First."})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []sms.Message{
		{Key: "new", Phone: phone, Body: "You're booked."},
		{Key: "sent-before", Phone: phone, Body: "Second."},
		{Key: "refused", Phone: "+44 7700 900000", Body: "Never arrives."},
		{Key: "twice", Phone: phone, Body: "Once."},
		{Key: "twice", Phone: phone, Body: "Once."},
	}
	receipts, err := sandbox.SendAll(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if r := receipts[0]; r.ProviderID == "" || r.Refused != nil {
		t.Errorf("a new message: %+v, want delivered", r)
	}
	if r := receipts[1]; r.ProviderID != before {
		t.Errorf("a key sent before: %+v, want its first id %s", r, before)
	}
	if r := receipts[2]; r.Refused == nil || r.Refused.Reason == "" || r.ProviderID != "" {
		t.Errorf("an undeliverable number: %+v, want refused with a reason", r)
	}
	if receipts[3] != receipts[4] || receipts[3].ProviderID == "" {
		t.Errorf("one key twice: %+v and %+v, want one delivered text", receipts[3], receipts[4])
	}
	again, err := sandbox.SendAll(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		if (again[i].Refused == nil) != (receipts[i].Refused == nil) || again[i].ProviderID != receipts[i].ProviderID {
			t.Errorf("%s repeated: %+v, want %+v", msgs[i].Key, again[i], receipts[i])
		}
	}
	inbox, err := sandbox.Inbox(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(inbox) != 3 {
		t.Errorf("%d texts in the inbox, want 3 (sent before, new, twice once): %+v", len(inbox), inbox)
	}
	if _, err := sandbox.SendAll(ctx, []sms.Message{{Phone: phone, Body: "x"}}); err == nil {
		t.Error("a message without an idempotency key was taken")
	}
}

// TestSandboxSendAllRacingSendTextsOnce: a batch and single sends of the same keys at the same
// moment (a redelivery meeting the first delivery) store one text per key, and both callers
// hear the same message id for it.
func TestSandboxSendAllRacingSendTextsOnce(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	sandbox := sms.NewSandbox(conn, time.Now)
	ctx := context.Background()
	for round := range 20 {
		msgs := make([]sms.Message, 8)
		for i := range msgs {
			msgs[i] = sms.Message{Key: fmt.Sprintf("round-%d-%d", round, i), Phone: "+447700900123", Body: "You're booked."}
		}
		singles := make([]string, len(msgs))
		var batch []sms.Receipt
		var wg sync.WaitGroup
		errs := make(chan error, len(msgs)+1)
		wg.Go(func() {
			var err error
			batch, err = sandbox.SendAll(ctx, msgs)
			errs <- err
		})
		for i, msg := range msgs {
			wg.Go(func() {
				var err error
				singles[i], err = sandbox.Send(ctx, msg)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := range msgs {
			if batch[i].ProviderID != singles[i] || batch[i].Refused != nil {
				t.Fatalf("%s: the batch heard %+v, the single send %q; want one message", msgs[i].Key, batch[i], singles[i])
			}
		}
	}
	var rows int
	if err := conn.Get(&rows, `SELECT count(*) FROM sms_sandbox.messages`); err != nil || rows != 20*8 {
		t.Errorf("%d texts (err %v), want %d", rows, err, 20*8)
	}
}
