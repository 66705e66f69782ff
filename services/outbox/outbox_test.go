package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
)

const table = "web.outbox"

// flakyPublisher records what it publishes and fails while failing is set.
type flakyPublisher struct {
	mu      sync.Mutex
	failing bool
	calls   int
	got     []string
}

func (p *flakyPublisher) Publish(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.failing {
		return errors.New("broker unavailable")
	}
	for _, m := range msgs {
		p.got = append(p.got, m.Key)
	}
	return nil
}

func (p *flakyPublisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

func queue(t testing.TB, conn *sqlx.DB, keys ...string) {
	t.Helper()
	tx := conn.MustBegin()
	for _, k := range keys {
		env, _ := event.New(event.TypeBookingRequested, uuid.NewString(), event.BookingRequested{}, time.Now())
		if err := outbox.Add(context.Background(), tx, table, kafka.Message{Topic: event.TopicBookingMovie, Key: k, Envelope: env}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited 10s for %s", what)
}

func run(t *testing.T, r *outbox.Relay) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestRelayKeepsEverythingThroughAnOutage: while the broker refuses, nothing is lost or
// dropped; once it answers, every message goes out once, in the order queued, and the table
// empties.
func TestRelayKeepsEverythingThroughAnOutage(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	pub := &flakyPublisher{failing: true}
	relay := outbox.NewRelay(conn, table, pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	run(t, relay)

	var want []string
	for i := range 30 {
		want = append(want, fmt.Sprintf("show-%02d", i))
	}
	queue(t, conn, want[:10]...)
	relay.Notify()
	waitFor(t, "failed attempts", func() bool { pub.mu.Lock(); defer pub.mu.Unlock(); return pub.calls >= 2 })
	queue(t, conn, want[10:]...)
	pub.mu.Lock()
	pub.failing = false
	pub.mu.Unlock()
	relay.Notify()

	waitFor(t, "all 30 published", func() bool { return len(pub.published()) >= 30 })
	if got := pub.published(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %v, want %v in order, once each", got, want)
	}
	// Deleted in the transaction that read them, which commits just after the publish returns.
	waitFor(t, "the outbox to empty", func() bool {
		var left int
		return conn.Get(&left, `SELECT count(*) FROM web.outbox`) == nil && left == 0
	})
}

// TestTwoRelaysShareATableWithoutDuplicates: web replicas share the web schema; their relays
// take turns, so each message goes out once and in order.
func TestTwoRelaysShareATableWithoutDuplicates(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	pub := &flakyPublisher{}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, second := outbox.NewRelay(conn, table, pub, quiet), outbox.NewRelay(conn, table, pub, quiet)
	run(t, first)
	run(t, second)
	var want []string
	for i := range 200 {
		key := fmt.Sprintf("k%03d", i)
		want = append(want, key)
		queue(t, conn, key)
		if i%2 == 0 {
			first.Notify()
		} else {
			second.Notify()
		}
	}
	waitFor(t, "all 200 published", func() bool { return len(pub.published()) >= 200 })
	time.Sleep(600 * time.Millisecond) // a poll round: a duplicate would show up now
	if got := pub.published(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %d messages (want 200, in order): %v", len(got), got)
	}
}

func TestAddRefusesOtherTables(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	tx := conn.MustBegin()
	defer tx.Rollback()
	if err := outbox.Add(context.Background(), tx, "web.bookings; DROP TABLE web.outbox", kafka.Message{}); err == nil {
		t.Error("a table name that is not <schema>.outbox was accepted")
	}
}

// TestFirstDeliveryRemembersAnEventOnceCommitted: the inbox answers "first" once per event id,
// and forgets an id whose transaction rolled back (its effect never happened).
func TestFirstDeliveryRemembersAnEventOnceCommitted(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	ctx := context.Background()
	first := func(id string, commit bool) bool {
		tx := conn.MustBegin()
		defer tx.Rollback()
		ok, err := outbox.FirstDelivery(ctx, tx, "booking.inbox", id)
		if err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		return ok
	}
	if !first("e1", false) || !first("e1", true) {
		t.Error("an event was not new the first time, or a rolled-back delivery was remembered")
	}
	if first("e1", true) {
		t.Error("a redelivered event was taken for a new one")
	}
	if !first("e2", true) {
		t.Error("another event was taken for a redelivery")
	}
}

// TestRelaysDeleteLeavesTheConnectionDurable: the relay's delete commits without waiting for
// the disk, and only it: the next transaction on the same pooled connection (a booking's
// effect and its outbox row, say) must wait for the disk as every other does.
func TestRelaysDeleteLeavesTheConnectionDurable(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	conn.SetMaxOpenConns(1) // the relay's connection is the one asked afterwards
	pub := &flakyPublisher{}
	relay := outbox.NewRelay(conn, table, pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	run(t, relay)
	queue(t, conn, "show-1", "show-2")
	relay.Notify()
	waitFor(t, "both published and deleted", func() bool {
		var left int
		return len(pub.published()) == 2 && conn.Get(&left, `SELECT count(*) FROM web.outbox`) == nil && left == 0
	})
	var mode string
	if err := conn.Get(&mode, `SHOW synchronous_commit`); err != nil {
		t.Fatal(err)
	}
	if mode != "on" {
		t.Errorf("after the relay's delete the connection commits with synchronous_commit=%s; want on", mode)
	}
}

// TestRelaysStatementTakesABacklogByIndex: the relay's statement is planned once, while its
// table is empty and known to be (as autovacuum leaves an outbox drained as fast as it fills).
// After an outage thousands of rows wait, and the plan must still take the oldest by index, not
// walk the whole table running the query for the oldest again for every row (3.4 s a drain at
// 20,000 rows with the plan that did).
func TestRelaysStatementTakesABacklogByIndex(t *testing.T) {
	ctx := context.Background()
	conn := dbtest.NewMigrated(t, nil)
	session, err := conn.Connx(ctx) // one session: the plan is made and read on it
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	for _, stmt := range []string{`VACUUM ANALYZE web.outbox`, `PREPARE take(bigint, bigint) AS ` + outbox.TakeStatement(table)} {
		if _, err := session.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	var plan string
	if err := session.GetContext(ctx, &plan, `EXPLAIN (FORMAT JSON) EXECUTE take(1, 500)`); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan, "Nested Loop") || !strings.Contains(plan, "= ANY") {
		t.Errorf("the relay's statement, planned on an empty outbox, would walk a backlog once a row:\n%s", plan)
	}
}

// TestFastLanesDeleteFindsItsRowsByIndex: the fast lane's delete, planned once while its table
// is empty, finds its rows by key when a backlog waits, without a join over the table.
func TestFastLanesDeleteFindsItsRowsByIndex(t *testing.T) {
	ctx := context.Background()
	conn := dbtest.NewMigrated(t, nil)
	session, err := conn.Connx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	for _, stmt := range []string{`VACUUM ANALYZE web.outbox`, `PREPARE delete_fast(bigint[]) AS ` + outbox.DeleteFastStatement(table)} {
		if _, err := session.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	var plan string
	if err := session.GetContext(ctx, &plan, `EXPLAIN (FORMAT JSON) EXECUTE delete_fast('{1,2,3}')`); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan, "Nested Loop") || strings.Count(plan, "= ANY") < 2 {
		t.Errorf("the fast lane's delete, planned on an empty outbox, would walk a backlog once a row:\n%s", plan)
	}
}

// TestAFailedPublishEndsTheRelaysTransaction: the relay begins its transaction itself, in the
// query that takes the rows, so database/sql does not know of it. A publish that fails must
// end it before the connection goes back to the pool: otherwise the next statement on that
// connection would run inside the relay's transaction, with its deleted rows and its
// synchronous_commit off. One connection in the pool, so the test gets the relay's.
func TestAFailedPublishEndsTheRelaysTransaction(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	conn.SetMaxOpenConns(1)
	pub := &flakyPublisher{failing: true}
	relay := outbox.NewRelay(conn, table, pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	queue(t, conn, "show-a", "show-b")
	run(t, relay)
	relay.Notify()
	waitFor(t, "a failed attempt", func() bool { pub.mu.Lock(); defer pub.mu.Unlock(); return pub.calls >= 1 })

	var session struct {
		Mode    string `db:"mode"`
		InWrite bool   `db:"in_write"`
		Queued  int    `db:"queued"`
	}
	if err := conn.Get(&session, `SELECT current_setting('synchronous_commit') AS mode,
		pg_current_xact_id_if_assigned() IS NOT NULL AS in_write, (SELECT count(*) FROM web.outbox) AS queued`); err != nil {
		t.Fatal(err)
	}
	if session.Mode != "on" || session.InWrite {
		t.Errorf("after a failed publish the pooled connection has synchronous_commit=%s and is inside a write transaction: %v; want on and outside",
			session.Mode, session.InWrite)
	}
	if session.Queued != 2 {
		t.Errorf("after a failed publish the outbox holds %d messages; want both still queued", session.Queued)
	}
	queue(t, conn, "show-c") // a transaction of database/sql's own can begin on that connection
}
