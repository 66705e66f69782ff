package notification_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
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

// smsRecord is what a notification database says of each booking: its messages and the
// outcomes queued for it.
func smsRecord(t *testing.T, conn *sqlx.DB) map[string]string {
	t.Helper()
	got := map[string]string{}
	var rows []struct {
		ID     string `db:"booking_id"`
		Kind   string `db:"kind"`
		Status string `db:"status"`
		Error  string `db:"error"`
	}
	if err := conn.Select(&rows, `SELECT booking_id::text, kind, status, error FROM notification.messages`); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		got[r.ID] += r.Kind + ":" + r.Status + ":" + r.Error
	}
	for _, m := range queued(t, conn) {
		var result event.NotificationResult
		if err := m.Envelope.Decode(&result); err != nil {
			t.Fatal(err)
		}
		got[m.Key] += fmt.Sprintf(" → %s paid=%v", m.Envelope.Type, result.Paid)
	}
	return got
}

// TestBatchTextsAsOneAtATimeWould: contacts and payment outcomes fetched together are recorded
// and texted in a few statements, with the texts and outcomes one by one gives: a confirmation,
// a failed payment's text, and a number the provider refuses. A batch seen again is refused, and
// the one-by-one path it falls back to texts nobody twice. An outcome whose contact is not read
// yet sends the batch down that path before anyone is texted. A provider that takes a batch in
// one request is asked once for the batch's texts; one that does not, once for each.
func TestBatchTextsAsOneAtATimeWould(t *testing.T) {
	t.Run("provider takes a batch", func(t *testing.T) {
		testBatchTextsAsOneAtATimeWould(t, func(s *sms.Sandbox) countedSender { return &batchSender{sender: sender{sandbox: s}} })
	})
	t.Run("provider takes one text at a time", func(t *testing.T) {
		testBatchTextsAsOneAtATimeWould(t, func(s *sms.Sandbox) countedSender { return &sender{sandbox: s} })
	})
}

// countedSender is an SMS provider that counts the requests it was sent.
type countedSender interface {
	sms.Sender
	requests() (sends, batches int)
}

// sender is the sandbox taking one text a request (a field, not embedded: it must not offer
// the sandbox's SendAll).
type sender struct {
	sandbox        *sms.Sandbox
	mu             sync.Mutex
	sends, batches int
}

func (s *sender) Send(ctx context.Context, msg sms.Message) (string, error) {
	s.mu.Lock()
	s.sends++
	s.mu.Unlock()
	return s.sandbox.Send(ctx, msg)
}

func (s *sender) requests() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends, s.batches
}

// batchSender is the sandbox taking a batch of texts a request too.
type batchSender struct{ sender }

func (s *batchSender) SendAll(ctx context.Context, msgs []sms.Message) ([]sms.Receipt, error) {
	s.mu.Lock()
	s.batches++
	s.mu.Unlock()
	return s.sandbox.SendAll(ctx, msgs)
}

func testBatchTextsAsOneAtATimeWould(t *testing.T, provider func(*sms.Sandbox) countedSender) {
	ctx := context.Background()
	type side struct {
		conn     *sqlx.DB
		inbox    *sms.Sandbox
		provider countedSender
		svc      *notification.Service
	}
	newSide := func() side {
		conn := dbtest.NewMigrated(t, nil)
		inbox := sms.NewSandbox(conn, time.Now)
		p := provider(inbox)
		return side{conn, inbox, p, notification.NewService(conn, p, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	}
	one, batched := newSide(), newSide()
	details := event.BookingDetails{MovieTitle: "Orbital Decay", TheatreName: "Boxoffice Bankside", ScreenNumber: 2,
		StartsAt: time.Date(2026, 11, 27, 19, 30, 0, 0, time.UTC), Timezone: "Europe/London", Seats: []string{"C4"}}
	phones := []string{"+447700900101", "+447700900102", "+447700900000", "+447700900104"}
	var contacts, outcomes []kafka.Delivery
	for i, phone := range phones {
		id := uuid.NewString()
		req := event.BookingRequested{CustomerName: "Ada", Phone: phone}
		env, _ := event.New(event.TypeBookingRequested, id, req, time.Now())
		contacts = append(contacts, kafka.Delivery{Envelope: env})
		if err := one.svc.HandleBookingRequested(ctx, env, req); err != nil {
			t.Fatal(err)
		}
		var outcome event.Envelope
		if i == 1 {
			outcome, _ = event.New(event.TypePaymentFailed, id, event.PaymentFailed{Booking: details, Code: "card_declined", Reason: "Your card was declined."}, time.Now())
		} else {
			outcome, _ = event.New(event.TypePaymentSucceeded, id, event.PaymentSucceeded{Booking: details, PaymentID: "ch_" + id}, time.Now())
		}
		outcomes = append(outcomes, kafka.Delivery{Envelope: outcome, Trace: kafka.NextSpan("")})
	}
	// A redelivered request in the contacts' batch keeps the contact read first.
	again, _ := event.New(event.TypeBookingRequested, contacts[0].Envelope.BookingID, event.BookingRequested{Phone: "+447700900999"}, time.Now())
	if err := batched.svc.HandleContactsBatch(ctx, append(contacts, kafka.Delivery{Envelope: again})); err != nil {
		t.Fatal(err)
	}
	handleOneByOne := func(s side, batch []kafka.Delivery) {
		for _, d := range batch {
			var err error
			if d.Envelope.Type == event.TypePaymentFailed {
				var p event.PaymentFailed
				_ = d.Envelope.Decode(&p)
				err = s.svc.HandlePaymentFailed(ctx, d.Envelope, p)
			} else {
				var p event.PaymentSucceeded
				_ = d.Envelope.Decode(&p)
				err = s.svc.HandlePaymentSucceeded(ctx, d.Envelope, p)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	handleOneByOne(one, outcomes)
	if err := batched.svc.HandlePaymentBatch(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	sends, batches := batched.provider.requests()
	if _, takesBatches := batched.provider.(sms.BatchSender); takesBatches && (sends != 0 || batches != 1) {
		t.Errorf("the batch of %d asked the provider %d times one by one and %d times in a batch; want one batch", len(outcomes), sends, batches)
	} else if !takesBatches && sends != len(outcomes) {
		t.Errorf("the batch of %d sent %d texts, want each once", len(outcomes), sends)
	}
	want, got := smsRecord(t, one.conn), smsRecord(t, batched.conn)
	for _, d := range outcomes {
		id := d.Envelope.BookingID
		if got[id] != want[id] || !strings.Contains(want[id], "→") {
			t.Errorf("booking %s: batch %q, one by one %q", id, got[id], want[id])
		}
	}
	inboxOf := func(s side) []string {
		msgs, err := s.inbox.Inbox(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, m := range msgs {
			texts = append(texts, m.Phone+" "+m.Body)
		}
		slices.Sort(texts)
		return texts
	}
	wantTexts := inboxOf(one)
	if gotTexts := inboxOf(batched); !slices.Equal(gotTexts, wantTexts) || len(wantTexts) != 3 {
		t.Errorf("batch texted %q\none by one %q; want the same three texts", gotTexts, wantTexts)
	}

	if err := batched.svc.HandlePaymentBatch(ctx, outcomes); err == nil {
		t.Error("a batch seen before was handled as a batch; want it refused")
	}
	handleOneByOne(batched, outcomes)
	if after := smsRecord(t, batched.conn); !maps.Equal(after, got) || len(inboxOf(batched)) != 3 {
		t.Errorf("after the redelivery: %v and %d texts", after, len(inboxOf(batched)))
	}

	stranger, _ := event.New(event.TypePaymentSucceeded, uuid.NewString(), event.PaymentSucceeded{Booking: details}, time.Now())
	fresh := newSide()
	if err := fresh.svc.HandleContactsBatch(ctx, contacts[:1]); err != nil {
		t.Fatal(err)
	}
	if err := fresh.svc.HandlePaymentBatch(ctx, []kafka.Delivery{outcomes[0], {Envelope: stranger}}); err == nil {
		t.Error("a batch with an outcome whose contact is unknown was texted as a batch")
	}
	if texts := inboxOf(fresh); len(texts) != 0 {
		t.Errorf("the refused batch texted %q; want nobody", texts)
	}
}

// TestTextsFindTheirBookingsByKeyAsTheTablesGrow: the look-up of whether a booking was texted
// is prepared once per connection, usually while notification.messages is nearly empty. Planned
// then, PostgreSQL chose to read the whole table into a hash on every call (a cheap plan for an
// empty table), so each SMS read every message ever sent: 765 rows a booking after 2,500
// bookings, growing all evening. Each SMS must find its booking's rows by key.
func TestTextsFindTheirBookingsByKeyAsTheTablesGrow(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	conn.SetMaxOpenConns(1) // one connection: the statement is prepared, and planned, on the empty tables
	inbox := sms.NewSandbox(conn, time.Now)
	svc := notification.NewService(conn, inbox, nil, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	text := func() {
		t.Helper()
		bookingID := uuid.NewString()
		req := event.BookingRequested{Phone: "+447700900123", CustomerName: "Ada"}
		reqEnv, _ := event.New(event.TypeBookingRequested, bookingID, req, time.Now())
		if err := svc.HandleBookingRequested(ctx, reqEnv, req); err != nil {
			t.Fatal(err)
		}
		paid := event.PaymentSucceeded{Booking: event.BookingDetails{MovieTitle: "Orbital Decay", Timezone: "Europe/London", Seats: []string{"A1"}}}
		env, _ := event.New(event.TypePaymentSucceeded, bookingID, paid, time.Now())
		if err := svc.HandlePaymentSucceeded(ctx, env, paid); err != nil {
			t.Fatal(err)
		}
	}
	text() // prepares the look-up on empty tables
	const sent = 5000
	if _, err := conn.ExecContext(ctx, `INSERT INTO notification.messages (booking_id, kind, status, outcome_event)
		SELECT gen_random_uuid(), 'booking_confirmed', 'delivered', '{}' FROM generate_series(1, $1)`, sent); err != nil {
		t.Fatal(err)
	}
	rowsRead := func() int64 {
		t.Helper()
		// The one connection reports what it read once it is idle after this statement.
		if _, err := conn.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		var n int64
		if err := conn.GetContext(ctx, &n, `SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)
			FROM pg_stat_user_tables WHERE relid = 'notification.messages'::regclass`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rowsRead()
	const bookings = 20
	for range bookings {
		text()
	}
	if read := rowsRead() - before; read > 5*bookings {
		t.Errorf("%d texts with %d messages sent before read %d rows of notification.messages; want a few a text, found by key", bookings, sent, read)
	}
}
