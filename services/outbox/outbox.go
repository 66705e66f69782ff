// Package outbox is the transactional outbox: a service writes the events its state change
// causes into a table of its own schema, in the same transaction as the change, and a relay
// publishes them to Kafka. So an event is published if and only if the change committed — a
// crash, a broker outage or a client that hangs up cannot separate the two — and a publish that
// fails is retried, never dropped.
package outbox

import (
	"cmp"
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// Publisher is what the relay publishes through.
type Publisher interface {
	Publish(ctx context.Context, msgs ...kafka.Message) error
}

var tableName = regexp.MustCompile(`^[a-z_]+\.outbox$`)

// Add queues messages in the caller's transaction. table is "<schema>.outbox".
func Add(ctx context.Context, tx *sqlx.Tx, table string, msgs ...kafka.Message) error {
	if !tableName.MatchString(table) {
		return fmt.Errorf("outbox: %q is not a <schema>.outbox table", table)
	}
	for _, m := range msgs {
		raw, err := Encode(ctx, m.Envelope)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (topic, key, envelope) VALUES ($1, $2, $3)`,
			m.Topic, m.Key, string(raw)); err != nil {
			return fmt.Errorf("outbox: queue %s: %w", m.Envelope.Type, err)
		}
	}
	return nil
}

// Encode is an envelope as an outbox row holds it, for a statement that queues it itself. The
// relay publishes later, without the handler's context: the trace goes with the event, so one
// booking stays one trace across every service.
func Encode(ctx context.Context, env event.Envelope) ([]byte, error) {
	if env.Traceparent == "" {
		env.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx))
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("outbox: encode %s: %w", env.Type, err)
	}
	return raw, nil
}

// Columns is msgs as the three arrays a batch's outbox insert takes (see QueueFrom), each
// envelope encoded as Encode does: for a statement that queues a batch of decisions itself, where
// one INSERT each would cost a round trip each.
func Columns(ctx context.Context, msgs []kafka.Message) (topics, keys, envelopes []string, err error) {
	topics, keys, envelopes = make([]string, len(msgs)), make([]string, len(msgs)), make([]string, len(msgs))
	for i, m := range msgs {
		raw, err := Encode(ctx, m.Envelope)
		if err != nil {
			return nil, nil, nil, err
		}
		topics[i], keys[i], envelopes[i] = m.Topic, m.Key, string(raw)
	}
	return topics, keys, envelopes, nil
}

// QueueFrom is the INSERT that queues into table the messages given as Columns' arrays in the
// statement's parameters $topics, $keys and $envelopes (their numbers), in their order: ids are
// taken in the order of the rows, which the relay publishes in. It fits in a data-modifying CTE.
func QueueFrom(table string, topics, keys, envelopes int) string {
	if !tableName.MatchString(table) {
		panic(fmt.Sprintf("outbox: %q is not a <schema>.outbox table", table))
	}
	return fmt.Sprintf(`INSERT INTO %s (topic, key, envelope)
		SELECT topic, key, envelope FROM unnest($%d::text[], $%d::text[], $%d::jsonb[]) WITH ORDINALITY AS m (topic, key, envelope, n)
		ORDER BY n`, table, topics, keys, envelopes)
}

// Relay publishes one outbox table's messages in the order they were queued, then deletes
// them. It wakes at once when told a transaction queued something (Notify) and polls as a
// fallback, for messages queued by another process sharing the table or left by a crash.
type Relay struct {
	db    *sqlx.DB
	table string
	pub   Publisher
	log   *slog.Logger
	wake  chan struct{}
	// beginAndTake is the drain's first round trip and prepareTake what it needs on a
	// connection first (see drain).
	beginAndTake, prepareTake string
	preparedOn                preparedConns
}

// preparedConns are the driver connections the take is prepared on, so each is prepared once
// before its first drain (not found missing by a failed EXECUTE, an ERROR in the server's log
// each time). Closed connections stay listed until the list passes its limit and starts again
// empty: then a live connection's PREPARE finds the statement there, which is fine too.
type preparedConns struct {
	mu    sync.Mutex
	conns map[any]struct{}
}

const preparedConnsLimit = 1000

func (p *preparedConns) has(dc any) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.conns[dc]
	return ok
}

func (p *preparedConns) add(dc any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil || len(p.conns) >= preparedConnsLimit {
		p.conns = make(map[any]struct{})
	}
	p.conns[dc] = struct{}{}
}

// pollInterval is how long a message can wait when no one notified the relay.
const pollInterval = 500 * time.Millisecond

// batchSize bounds one publish: enough to drain a burst in a few round trips, and what the
// publisher sends in one request per partition.
const batchSize = kafka.PublishBatch

// NewRelay returns the relay of table ("<schema>.outbox").
func NewRelay(db *sqlx.DB, table string, pub Publisher, log *slog.Logger) *Relay {
	h := fnv.New64a()
	_, _ = h.Write([]byte("outbox:" + table))
	r := &Relay{db: db, table: table, pub: pub, log: log.With("outbox", table), wake: make(chan struct{}, 1)}
	if tableName.MatchString(table) { // Run refuses any other name before a statement is sent
		r.beginAndTake, r.prepareTake = takeQueries(table, int64(h.Sum64()>>1))
	}
	return r
}

// Notify tells the relay that a transaction queued messages. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx is cancelled, then makes one last attempt to drain.
func (r *Relay) Run(ctx context.Context) error {
	if !tableName.MatchString(r.table) {
		return fmt.Errorf("outbox: %q is not a <schema>.outbox table", r.table)
	}
	backoff := 50 * time.Millisecond
	for {
		more, err := r.drain(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("outbox publish failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		case err == nil:
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = r.drain(final) // what is left stays queued for the next start
			cancel()
			return nil
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
		case <-r.wake:
		case <-time.After(pollInterval):
		}
	}
}

// drain publishes one batch. Per-table order is kept across processes: a transaction-scoped
// advisory lock lets one relay at a time take, publish and delete. It reports whether a full
// batch was sent (so there may be more).
//
// A drain is two round trips besides the publish: BEGIN and the take go to PostgreSQL as one
// simple query (lib/pq waits for every statement's answer, so a BEGIN of its own was a round
// trip before each hop's publish; drains were a third of all statements), and COMMIT. The take
// locks and deletes in one statement. Its snapshot may be older than the lock, and see rows the
// relay that held the lock has just published and deleted (TestTwoRelaysShareATableWithoutDuplicates
// caught a read doing that), but a DELETE takes only rows that are still there: such a row is
// skipped, never returned twice. The rows are gone only when the transaction commits, after the
// publish: a failed publish or a crash puts them back, to be published again (delivery is at
// least once anyway).
func (r *Relay) drain(ctx context.Context) (more bool, err error) {
	start := time.Now()
	conn, err := r.db.Connx(ctx)
	if err != nil {
		return false, fmt.Errorf("outbox: %w", err)
	}
	// The transaction is the driver's, not database/sql's: the connection goes back to the pool
	// only once it has ended, and is discarded when that is uncertain (a failed COMMIT or
	// ROLLBACK, a context cancelled mid-statement).
	inTx, discard := false, false
	defer func() {
		if inTx && !discard {
			// Not the caller's context, which may be why we are here, but not forever either: a
			// ROLLBACK that fails or times out discards the connection, ending the transaction.
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, rbErr := conn.ExecContext(rbCtx, `ROLLBACK`)
			cancel()
			discard = rbErr != nil
		}
		if discard {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		_ = conn.Close()
	}()
	var driverConn any
	_ = conn.Raw(func(dc any) error { driverConn = dc; return nil })
	var pqErr *pq.Error
	if !r.preparedOn.has(driverConn) {
		// 42P05: prepared already, by another relay of this table sharing the pool.
		if _, err := conn.ExecContext(ctx, r.prepareTake); err != nil && !(errors.As(err, &pqErr) && pqErr.Code == "42P05") {
			return false, fmt.Errorf("outbox: prepare the take from %s: %w", r.table, err)
		}
		r.preparedOn.add(driverConn)
	}
	inTx = true
	var rows []outboxRow
	err = conn.SelectContext(ctx, &rows, r.beginAndTake)
	if errors.As(err, &pqErr) && pqErr.Code == "26000" { // prepared once but gone (DISCARD ALL, say)
		if _, err = conn.ExecContext(ctx, `ROLLBACK; `+r.prepareTake); err == nil {
			err = conn.SelectContext(ctx, &rows, r.beginAndTake)
		}
	}
	if err != nil {
		// A plan gone stale (a newer process migrated the table) stays so on this connection:
		// a fresh one prepares the take afresh.
		discard = errors.As(err, &pqErr) && pqErr.Code == "0A000"
		return false, fmt.Errorf("outbox: take from %s: %w", r.table, err)
	}
	if len(rows) == 0 {
		return false, nil // nothing queued, or another replica's relay is draining this table
	}
	slices.SortFunc(rows, func(a, b outboxRow) int { return cmp.Compare(a.ID, b.ID) })
	msgs, err := decodeRows(rows, r.table)
	if err != nil {
		return false, err
	}
	taken := time.Now()
	if err := r.pub.Publish(ctx, msgs...); err != nil {
		return false, err
	}
	published := time.Now()
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return false, fmt.Errorf("outbox: commit: %w", err) // the deferred ROLLBACK decides the connection's fate
	}
	inTx = false
	// Where a hop's time goes, for scripts/hops.sh: the take (BEGIN and the locking delete), the
	// publish (until the broker acknowledged) and the commit of the delete.
	r.log.Debug("outbox published", "messages", len(msgs), "take", taken.Sub(start),
		"publish", published.Sub(taken), "commit", time.Since(published))
	return len(msgs) == batchSize, nil
}

// takeQueries are the simple query that begins a drain's transaction and takes its rows (a
// simple query carries no parameters, so the lock and the batch size are literals), and the
// PREPARE of the take it executes, sent on each connection once before its first drain: planning it on every drain
// cost PostgreSQL more than the BEGIN's round trip saved. The delete need not wait for the disk
// (synchronous_commit off, for this transaction only): if a crash loses it, the rows are
// published again, which every consumer's inbox absorbs, while a queued event itself is as
// durable as the change that queued it.
func takeQueries(table string, lockID int64) (beginAndTake, prepareTake string) {
	name := "boxoffice_take_" + strings.TrimSuffix(table, ".outbox")
	return fmt.Sprintf(`BEGIN READ WRITE; EXECUTE %s(%d, %d)`, name, lockID, batchSize),
		fmt.Sprintf(`PREPARE %s(bigint, bigint) AS %s`, name, takeStatement(table))
}

// takeStatement deletes and returns the oldest rows of table, up to $2, if this transaction gets
// the table's advisory lock ($1). The ids to take are an array, not a join: the statement is
// planned once, usually while the table is empty, and as a join that plan ran the inner query
// again for every row queued (3.4 s a drain with 20,000 rows waiting after an outage, against
// 0.7 ms).
func takeStatement(table string) string {
	return `WITH lock AS (
			SELECT pg_try_advisory_xact_lock($1) AS held, set_config('synchronous_commit', 'off', true) AS commit_mode
		)
		DELETE FROM ` + table + ` WHERE id = ANY(ARRAY(
			SELECT id FROM ` + table + ` WHERE (SELECT held AND commit_mode = 'off' FROM lock) ORDER BY id LIMIT $2
		)) RETURNING id, topic, key, envelope`
}

// outboxRow is a row of an outbox table.
type outboxRow struct {
	ID       int64  `db:"id"`
	Topic    string `db:"topic"`
	Key      string `db:"key"`
	Envelope []byte `db:"envelope"`
}

func decodeRows(rows []outboxRow, table string) ([]kafka.Message, error) {
	msgs := make([]kafka.Message, len(rows))
	for i, row := range rows {
		if err := json.Unmarshal(row.Envelope, &msgs[i].Envelope); err != nil {
			return nil, fmt.Errorf("outbox: decode row %d of %s: %w", row.ID, table, err)
		}
		msgs[i].Topic, msgs[i].Key = row.Topic, row.Key
	}
	return msgs, nil
}

// Pending lists the messages a table holds that are not published yet, oldest first: the
// backlog, for tests and operations.
func Pending(ctx context.Context, db sqlx.QueryerContext, table string) ([]kafka.Message, error) {
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("outbox: %q is not a <schema>.outbox table", table)
	}
	var rows []outboxRow
	if err := sqlx.SelectContext(ctx, db, &rows, `SELECT id, topic, key, envelope FROM `+table+` ORDER BY id`); err != nil {
		return nil, fmt.Errorf("outbox: read %s: %w", table, err)
	}
	return decodeRows(rows, table)
}

var inboxName = regexp.MustCompile(`^[a-z_]+\.inbox$`)

// FirstDelivery records an event id in the caller's transaction and reports whether this is
// the first time the event is handled. table is "<schema>.inbox". A false answer means the
// event's effect is already committed: the handler does nothing more.
func FirstDelivery(ctx context.Context, tx *sqlx.Tx, table, eventID string) (bool, error) {
	if !inboxName.MatchString(table) {
		return false, fmt.Errorf("inbox: %q is not a <schema>.inbox table", table)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING`, eventID)
	if err != nil {
		return false, fmt.Errorf("inbox: record %s: %w", eventID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}
