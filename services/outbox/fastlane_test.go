package outbox_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
)

// queueCommitted queues messages keyed by keys as the hot paths do (one INSERT, its ids
// returned), commits, and hands them to the relay's fast lane.
func queueCommitted(t testing.TB, conn *sqlx.DB, relay *outbox.Relay, keys ...string) {
	t.Helper()
	if err := tryQueueCommitted(conn, relay, keys...); err != nil {
		t.Fatal(err)
	}
}

func tryQueueCommitted(conn *sqlx.DB, relay *outbox.Relay, keys ...string) error {
	ids, msgs, err := insertQueued(conn, keys...)
	if err != nil {
		return err
	}
	relay.Committed(ids, msgs)
	return nil
}

// insertQueued queues messages keyed by keys in one INSERT and returns their rows' ids.
func insertQueued(conn *sqlx.DB, keys ...string) ([]int64, []kafka.Message, error) {
	ctx := context.Background()
	msgs := make([]kafka.Message, len(keys))
	for i, k := range keys {
		env, _ := event.New(event.TypeBookingRequested, uuid.NewString(), event.BookingRequested{}, time.Now())
		msgs[i] = kafka.Message{Topic: event.TopicBookingMovie, Key: k, Envelope: env}
	}
	topics, ks, envelopes, err := outbox.Columns(ctx, msgs)
	if err != nil {
		return nil, nil, err
	}
	var ids pq.Int64Array
	if err := conn.Get(&ids, `WITH queued AS (`+outbox.QueueFrom(table, 1, 2, 3)+`) SELECT ARRAY(SELECT id FROM queued)`,
		pq.Array(topics), pq.Array(ks), pq.Array(envelopes)); err != nil {
		return nil, nil, err
	}
	return ids, msgs, nil
}

// logBuffer is a debug-level log a test reads back.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), substr)
}

func debugLog(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startWithLaneOpen runs a relay logging at debug level and waits until its start-up drain
// (of the empty table) has opened the fast lane.
func startWithLaneOpen(t *testing.T, conn *sqlx.DB, pub outbox.Publisher) (*outbox.Relay, *logBuffer) {
	t.Helper()
	log := &logBuffer{}
	relay := outbox.NewRelay(conn, table, pub, debugLog(log))
	run(t, relay)
	waitFor(t, "the start-up drain to open the fast lane", func() bool { return log.count("fast lane open") == 1 })
	return relay, log
}

func outboxLeft(t *testing.T, conn *sqlx.DB) int {
	var left int
	if err := conn.Get(&left, `SELECT count(*) FROM web.outbox`); err != nil {
		t.Fatal(err)
	}
	return left
}

// firstSeen is keys in the order of their first publication, and how many were duplicates.
func firstSeen(keys []string) (order []string, duplicates int) {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			duplicates++
			continue
		}
		seen[k] = true
		order = append(order, k)
	}
	return order, duplicates
}

func keys(prefix string, from, to int) []string {
	var ks []string
	for i := from; i < to; i++ {
		ks = append(ks, fmt.Sprintf("%s-%02d", prefix, i))
	}
	return ks
}

// TestFastLanePublishesCommittedMessagesWithoutATake: messages handed over after their commit
// go out from memory, in order, once, with no drain taking them from the table; their rows are
// deleted after, and the delete leaves the pooled connection committing durably.
func TestFastLanePublishesCommittedMessagesWithoutATake(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	conn.SetMaxOpenConns(1) // the relay's connection is the one asked afterwards
	pub := &flakyPublisher{}
	relay, log := startWithLaneOpen(t, conn, pub)

	want := keys("show", 0, 12)
	queueCommitted(t, conn, relay, want[:4]...)
	queueCommitted(t, conn, relay, want[4:]...)
	waitFor(t, "all 12 published and deleted", func() bool { return len(pub.published()) >= 12 && outboxLeft(t, conn) == 0 })
	time.Sleep(600 * time.Millisecond) // a poll round: a duplicate would show up now
	if got := pub.published(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %v, want %v in order, once each", got, want)
	}
	if fast, all := log.count("lane=fast"), log.count("outbox published"); fast == 0 || fast != all {
		t.Errorf("%d of %d publishes went by the fast lane; want all", fast, all)
	}
	var mode string
	if err := conn.Get(&mode, `SHOW synchronous_commit`); err != nil {
		t.Fatal(err)
	}
	if mode != "on" {
		t.Errorf("after the fast lane's delete the connection commits with synchronous_commit=%s; want on", mode)
	}
}

// TestFastLaneKeepsOrderThroughAnOutage: while the broker refuses, messages handed to the fast
// lane and rows queued by Add all wait; once it answers, every key goes out, each first seen in
// the order queued, and the table empties. Duplicates are allowed (consumers' inboxes absorb
// them); reordering is not.
func TestFastLaneKeepsOrderThroughAnOutage(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	pub := &flakyPublisher{}
	relay, log := startWithLaneOpen(t, conn, pub)
	pub.mu.Lock()
	pub.failing = true
	pub.mu.Unlock()

	want := keys("show", 0, 30)
	queueCommitted(t, conn, relay, want[:10]...)
	waitFor(t, "a failed attempt", func() bool { pub.mu.Lock(); defer pub.mu.Unlock(); return pub.calls >= 1 })
	queue(t, conn, want[10:15]...) // queued by Add, older than what follows
	relay.Notify()
	queueCommitted(t, conn, relay, want[15:30]...)
	waitFor(t, "more failed attempts", func() bool { pub.mu.Lock(); defer pub.mu.Unlock(); return pub.calls >= 3 })
	if left := outboxLeft(t, conn); left != 30 {
		t.Fatalf("during the outage the outbox holds %d messages; want all 30", left)
	}
	pub.mu.Lock()
	pub.failing = false
	pub.mu.Unlock()

	waitFor(t, "every key published and the outbox empty", func() bool {
		order, _ := firstSeen(pub.published())
		return len(order) == 30 && outboxLeft(t, conn) == 0
	})
	time.Sleep(600 * time.Millisecond) // what the lane still held goes out now, if anything
	order, dups := firstSeen(pub.published())
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("keys first published in the order %v; want %v", order, want)
	}
	if n := log.count("fast lane open"); n != 2 {
		t.Errorf("the fast lane opened %d times; want twice, at start-up and once the outage was over", n)
	}
	t.Logf("%d duplicates after the outage", dups)
}

// TestFastLaneWaitsForRowsLeftBehind: rows a crash left in the table (queued, never published)
// go out before messages committed after the restart, though those are handed to the fast lane
// before the relay has even started.
func TestFastLaneWaitsForRowsLeftBehind(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	pub := &flakyPublisher{}
	relay := outbox.NewRelay(conn, table, pub, slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	left := keys("left", 0, 3)
	queue(t, conn, left...)
	fresh := keys("fresh", 0, 3)
	queueCommitted(t, conn, relay, fresh...)
	run(t, relay)

	want := append(left, fresh...)
	waitFor(t, "all 6 published and deleted", func() bool { return len(pub.published()) >= 6 && outboxLeft(t, conn) == 0 })
	time.Sleep(600 * time.Millisecond)
	order, dups := firstSeen(pub.published())
	if fmt.Sprint(order) != fmt.Sprint(want) || dups != 0 {
		t.Errorf("published %v; want %v, once each", pub.published(), want)
	}
}

// TestFastLaneWaitsForADrainThatHeldTheTable: replicas share a table, and a drain that finds
// another replica's relay holding it has seen nothing. The rows this process left behind must
// still go out before what it commits after its restart, once the other relay lets go.
func TestFastLaneWaitsForADrainThatHeldTheTable(t *testing.T) {
	ctx := context.Background()
	conn := dbtest.NewMigrated(t, nil)
	pub := &flakyPublisher{}
	relay := outbox.NewRelay(conn, table, pub, slog.New(slog.NewTextHandler(&logBuffer{}, nil)))
	other, err := conn.BeginTxx(ctx, nil) // another replica's drain, holding the table's lock
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback() }()
	if _, err := other.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, relay.LockID()); err != nil {
		t.Fatal(err)
	}
	left := keys("left", 0, 3)
	queue(t, conn, left...)
	fresh := keys("fresh", 0, 3)
	queueCommitted(t, conn, relay, fresh...)
	run(t, relay)
	time.Sleep(300 * time.Millisecond) // drains meanwhile find the table locked
	if got := pub.published(); len(got) != 0 {
		t.Fatalf("published %v while another relay held the table; want nothing yet", got)
	}
	if err := other.Rollback(); err != nil {
		t.Fatal(err)
	}

	want := append(left, fresh...)
	waitFor(t, "all 6 published and deleted", func() bool { return len(pub.published()) >= 6 && outboxLeft(t, conn) == 0 })
	time.Sleep(600 * time.Millisecond)
	if order, _ := firstSeen(pub.published()); fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("published %v; want %v first", pub.published(), want)
	}
}

// TestDrainOnlyPublishesCommittedMessagesByTheTake: with the fast lane off (OUTBOX_DRAIN_ONLY),
// messages handed over after their commit still go out, in order, once: the drain takes them.
func TestDrainOnlyPublishesCommittedMessagesByTheTake(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	pub := &flakyPublisher{}
	var log logBuffer
	relay := outbox.NewRelay(conn, table, pub, debugLog(&log))
	relay.DrainOnly()
	run(t, relay)
	want := keys("show", 0, 5)
	queueCommitted(t, conn, relay, want...)
	waitFor(t, "all 5 published and deleted", func() bool { return len(pub.published()) >= 5 && outboxLeft(t, conn) == 0 })
	time.Sleep(600 * time.Millisecond)
	if got := pub.published(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %v, want %v in order, once each", got, want)
	}
	if fast := log.count("lane=fast"); fast != 0 {
		t.Errorf("%d publishes went by the fast lane; want none with it off", fast)
	}
}

// TestRowsAnotherProcessLeftGoOutUnderLoad: while the fast lane is kept busy, rows queued by
// another process that will not publish them (it crashed) are still found by the poll, within
// a few poll rounds, not once the load stops.
func TestRowsAnotherProcessLeftGoOutUnderLoad(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	pub := &flakyPublisher{}
	relay, _ := startWithLaneOpen(t, conn, pub)

	stop := make(chan struct{})
	busy := make(chan struct{})
	go func() { // a message through the fast lane every 20 ms, far more often than the poll
		defer close(busy)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if err := tryQueueCommitted(conn, relay, fmt.Sprintf("busy-%03d", i)); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-busy }()
	time.Sleep(100 * time.Millisecond)
	queue(t, conn, "orphan") // no Notify: the process that queued it is gone
	waitFor(t, "the orphaned row published while the fast lane is busy", func() bool {
		return slices.Contains(pub.published(), "orphan")
	})
}
