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
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/prepared"
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
		raw, err := encode(ctx, m.Envelope)
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

// encode is an envelope as an outbox row holds it, stamped (Stamp).
func encode(ctx context.Context, env event.Envelope) ([]byte, error) {
	raw, err := json.Marshal(Stamp(ctx, env))
	if err != nil {
		return nil, fmt.Errorf("outbox: encode %s: %w", env.Type, err)
	}
	return raw, nil
}

// Stamp is env with the trace its outbox row carries: ctx's, a span of its own, unless it has
// one. The relay publishes without the handler's context, so the trace goes with the event and
// one booking stays one trace across every service. A message handed to Relay.Committed must be
// stamped as its row was encoded, so the fast lane publishes what the drain would.
func Stamp(ctx context.Context, env event.Envelope) event.Envelope {
	if env.Traceparent == "" {
		env.Traceparent = kafka.NextSpan(kafka.TraceFrom(ctx))
	}
	return env
}

// Columns is msgs as the three arrays a batch's outbox insert takes (see QueueFrom), each
// envelope encoded as Add encodes it: for a statement that queues a batch of decisions itself, where
// one INSERT each would cost a round trip each. It stamps msgs' envelopes in place (Stamp), for
// Relay.Committed.
func Columns(ctx context.Context, msgs []kafka.Message) (topics, keys, envelopes []string, err error) {
	topics, keys, envelopes = make([]string, len(msgs)), make([]string, len(msgs)), make([]string, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		m.Envelope = Stamp(ctx, m.Envelope)
		raw, err := encode(ctx, m.Envelope)
		if err != nil {
			return nil, nil, nil, err
		}
		topics[i], keys[i], envelopes[i] = m.Topic, m.Key, string(raw)
	}
	return topics, keys, envelopes, nil
}

// QueueFrom is the INSERT that queues into table the messages given as Columns' arrays in the
// statement's parameters $topics, $keys and $envelopes (their numbers), in their order: ids are
// taken in the order of the rows, which the relay publishes in. It fits in a data-modifying CTE,
// and returns the ids, for Relay.Committed.
func QueueFrom(table string, topics, keys, envelopes int) string {
	if !tableName.MatchString(table) {
		panic(fmt.Sprintf("outbox: %q is not a <schema>.outbox table", table))
	}
	return fmt.Sprintf(`INSERT INTO %s (topic, key, envelope)
		SELECT topic, key, envelope FROM unnest($%d::text[], $%d::text[], $%d::jsonb[]) WITH ORDINALITY AS m (topic, key, envelope, n)
		ORDER BY n RETURNING id`, table, topics, keys, envelopes)
}

// Relay publishes one outbox table's messages in the order they were queued, then deletes
// them. It wakes at once when handed committed messages (Committed) or told a transaction
// queued some (Notify), and polls every pollInterval however busy it is, for messages queued
// by another process sharing the table or left by a crash.
//
// It has two lanes. The drain takes the rows from the table, under the table's lock, publishes
// them and deletes them in one transaction: it needs nothing but the table, so it is how every
// message left over (by a crash, a failed publish, another process, an Add) goes out. The fast
// lane is for the hot paths: a handler whose transaction queued messages hands them, with their
// row ids, to Committed once it has committed, and the relay publishes them from memory and
// then deletes their rows. That saves the drain's take: a batch costs one round trip, after its
// publish, instead of two, one of them before it.
//
// Per-key order within this process holds across both lanes: one goroutine runs them, a drain
// goes first whenever one is wanted, the fast lane publishes in the order messages were
// committed, and it is closed from a publish or delete that fails until a drain has held the
// table and found nothing older left (the messages still in memory then go again, duplicates
// that consumers' inboxes absorb, behind the older rows the drain sent). It starts closed, so
// rows a crash left are published before anything newer. What the lane does not keep is order
// against rows another process queued and has not published yet. For a booking's events that
// is no loss: its next event is caused by its last one having been published and handled,
// except across a consumer-group rebalance, where delivery is at least once anyway. The web's
// requests, keyed by show, come from Book presses made at the same moment on different
// replicas, which have no order to keep. A message the lane holds while a drain (the poll)
// also takes its row may go out twice.
type Relay struct {
	db    *sqlx.DB
	table string
	pub   Publisher
	log   *slog.Logger
	wake  chan struct{}
	// drainWanted is set by Notify: rows are waiting that the fast lane was not given.
	drainWanted atomic.Bool
	fast        fastLane
	// deleteFast is the fast lane's delete of the rows it published.
	deleteFast string
	// lockID is the table's advisory lock, which a drain takes.
	lockID int64
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

// reopenRetry is how soon a closed fast lane's relay drains again when another replica's relay
// held the table.
const reopenRetry = 20 * time.Millisecond

// batchSize bounds one publish: enough to drain a burst in a few round trips, and what the
// publisher sends in one request per partition.
const batchSize = kafka.PublishBatch

// NewRelay returns the relay of table ("<schema>.outbox").
func NewRelay(db *sqlx.DB, table string, pub Publisher, log *slog.Logger) *Relay {
	h := fnv.New64a()
	_, _ = h.Write([]byte("outbox:" + table))
	r := &Relay{db: db, table: table, pub: pub, log: log.With("outbox", table), wake: make(chan struct{}, 1)}
	r.fast.enabled = true
	if tableName.MatchString(table) { // Run refuses any other name before a statement is sent
		r.lockID = int64(h.Sum64() >> 1)
		r.beginAndTake, r.prepareTake = takeQueries(table, r.lockID)
		r.deleteFast = deleteFastStatement(table)
	}
	return r
}

// DrainOnly turns the fast lane off: every message goes out through the drain's take, as
// before the fast lane (OUTBOX_DRAIN_ONLY, to compare the two). Call it before Run.
func (r *Relay) DrainOnly() {
	r.fast.mu.Lock()
	defer r.fast.mu.Unlock()
	r.fast.enabled = false
}

// Notify tells the relay that a transaction queued messages. It never blocks.
func (r *Relay) Notify() {
	r.drainWanted.Store(true)
	r.poke()
}

func (r *Relay) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// queued is a message a transaction queued, with the id of its row.
type queued struct {
	id  int64
	msg kafka.Message
}

// Committed hands the relay messages a transaction queued and has committed, in the order they
// were queued, each exactly as its row holds it (the same trace: see Stamp), with the ids the
// INSERT returned. A statement that inserts its rows ordered (as QueueFrom does) takes their ids
// in that order, so the smallest id is the first message's. The messages are published from
// memory, without the drain's take; if the fast lane is off or full, or the counts differ, they
// wait for the drain instead, which finds them in the table. It never blocks.
func (r *Relay) Committed(ids []int64, msgs []kafka.Message) {
	if len(msgs) == 0 {
		return
	}
	if len(ids) != len(msgs) {
		r.Notify()
		return
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	batch := make([]queued, len(msgs))
	for i, m := range msgs {
		batch[i] = queued{id: ids[i], msg: m}
	}
	if !r.fast.add(batch) {
		r.Notify()
		return
	}
	r.poke()
}

// fastLane holds the committed messages the relay publishes from memory.
type fastLane struct {
	mu      sync.Mutex
	enabled bool // false: DrainOnly
	// open is false from the start and from a failed publish or an overflow until a drain
	// has published everything the table held.
	open    bool
	waiting []queued
	// dropped counts overflows: the drain that reopens the lane must have begun after the last
	// one, so that it took the rows of every message dropped from memory.
	dropped int
}

// fastLaneLimit bounds the messages held in memory while the lane is closed (a broker outage):
// past it they are forgotten, and left to the drain.
const fastLaneLimit = 20 * batchSize

func (f *fastLane) add(queued []queued) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.enabled {
		return false
	}
	if len(f.waiting)+len(queued) > fastLaneLimit {
		f.waiting, f.open = nil, false
		f.dropped++
		return false
	}
	f.waiting = append(f.waiting, queued...)
	return true
}

// next is a copy of the oldest batch waiting, if the lane is open, and the overflow count it
// belongs to (for sent).
func (f *fastLane) next() ([]queued, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open || len(f.waiting) == 0 {
		return nil, 0
	}
	return slices.Clone(f.waiting[:min(len(f.waiting), batchSize)]), f.dropped
}

// ready reports whether next has a batch.
func (f *fastLane) ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open && len(f.waiting) > 0
}

// sent removes a published batch of n from the front, where next found it: meanwhile add only
// appends, or drops everything (and counts it).
func (f *fastLane) sent(n, gen int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropped == gen && len(f.waiting) >= n {
		f.waiting = slices.Delete(f.waiting, 0, n)
	}
}

// forget removes from memory the messages of rows a drain published.
func (f *fastLane) forget(rows []outboxRow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waiting) == 0 {
		return
	}
	taken := make(map[int64]bool, len(rows))
	for _, row := range rows {
		taken[row.ID] = true
	}
	f.waiting = slices.DeleteFunc(f.waiting, func(q queued) bool { return taken[q.id] })
}

func (f *fastLane) closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enabled && !f.open
}

func (f *fastLane) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open = false
}

func (f *fastLane) drops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// reopen opens the lane after a drain that began when drops() was droppedBefore and found
// nothing left to take. It reports false if the lane must wait for another drain: messages were
// dropped from memory since that one began, and it may have missed their rows.
func (f *fastLane) reopen(droppedBefore int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropped != droppedBefore {
		return false
	}
	f.open = true
	return true
}

// Run relays until ctx is cancelled, then makes one last attempt to drain.
func (r *Relay) Run(ctx context.Context) error {
	if !tableName.MatchString(r.table) {
		return fmt.Errorf("outbox: %q is not a <schema>.outbox table", r.table)
	}
	backoff := 50 * time.Millisecond
	drainNext := true // the first pass drains: what a crash left goes before anything newer
	// The poll is kept however busy the fast lane is: rows another process left (it crashed,
	// say) wait at most two poll intervals under any load, as they waited for the next Notify
	// when every Notify drained.
	var lastDrain time.Time
	for {
		if ctx.Err() != nil {
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _, _ = r.drain(final, false) // what is left stays queued for the next start
			cancel()
			return nil
		}
		// A drain goes first when one is wanted: a row queued by Add may be older than the
		// messages waiting in memory, and the drain takes both kinds in the order queued. The
		// poll waits for the lane to be empty (its rows are someone else's, with no order to
		// keep against this process's, and the lane's own would go twice), unless it is
		// overdue by a whole interval: then the lane has been busy that long.
		sinceDrain := time.Since(lastDrain)
		pollDue := sinceDrain >= pollInterval && (!r.fast.ready() || sinceDrain >= 2*pollInterval)
		if drainNext || r.drainWanted.Swap(false) || pollDue {
			lastDrain = time.Now()
			droppedBefore := r.fast.drops()
			closed := r.fast.closed()
			more, emptied, err := r.drain(ctx, closed)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("outbox publish failed; retrying", "err", err, "backoff", backoff)
					select {
					case <-ctx.Done():
					case <-time.After(backoff):
					}
					backoff = min(backoff*2, 5*time.Second)
				}
				drainNext = true
				continue
			}
			backoff = 50 * time.Millisecond
			drainNext = more
			if closed && !more {
				// The lane opens only after a drain that held the table's lock and found nothing
				// to take, and began after the last overflow: then every row queued before it
				// is published. A drain that took rows, or found another replica's relay
				// draining, is followed by another a moment later.
				if !emptied || !r.fast.reopen(droppedBefore) {
					drainNext = true
					if !emptied {
						select {
						case <-ctx.Done():
						case <-time.After(reopenRetry):
						}
					}
					continue
				}
				r.log.Debug("outbox fast lane open")
			}
			continue
		}
		if batch, gen := r.fast.next(); batch != nil {
			if err := r.publishFast(ctx, batch, gen); err != nil {
				// Closed until a drain has published what is left: the batch itself if its
				// publish failed, its rows if their delete did (a duplicate, then, but before
				// anything newer).
				r.fast.close()
				if ctx.Err() == nil {
					r.log.Warn("outbox fast lane failed; the drain retries", "err", err)
				}
				drainNext = true
			}
			continue
		}
		drainNext = r.wait(ctx, lastDrain.Add(pollInterval))
	}
}

// wait waits for something to publish: messages handed to the fast lane, a Notify, or the
// poll at pollAt, after which it asks for a drain (rows another process queued, or a crash left).
func (r *Relay) wait(ctx context.Context, pollAt time.Time) (poll bool) {
	timer := time.NewTimer(time.Until(pollAt))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-r.wake:
			if r.drainWanted.Load() || r.fast.ready() {
				return false
			}
		}
	}
}

// publishFast publishes a batch the fast lane holds, then deletes its rows. A publish that
// fails leaves the batch waiting and the rows in the table; a delete that fails leaves rows
// the drain publishes again (a duplicate the consumers' inboxes absorb).
func (r *Relay) publishFast(ctx context.Context, batch []queued, gen int) error {
	start := time.Now()
	msgs := make([]kafka.Message, len(batch))
	ids := make([]int64, len(batch))
	for i, q := range batch {
		msgs[i], ids[i] = q.msg, q.id
	}
	if err := r.pub.Publish(ctx, msgs...); err != nil {
		return err
	}
	r.fast.sent(len(batch), gen)
	published := time.Now()
	if _, err := prepared.Exec(ctx, r.db, r.deleteFast, pq.Array(ids)); err != nil {
		return fmt.Errorf("outbox: delete %d published rows of %s (they go again): %w", len(ids), r.table, err)
	}
	// As the drain logs it, for boxoffice hops: the publish and the delete (there is no take).
	r.log.Debug("outbox published", "messages", len(msgs), "lane", "fast",
		"publish", published.Sub(start), "commit", time.Since(published))
	return nil
}

// deleteFastStatement deletes rows the fast lane published ($1, their ids), without waiting for
// the disk (as the drain's delete: a delete lost to a crash only publishes its rows again). A
// row another replica's drain has taken meanwhile (its poll) is skipped, not waited for: that
// drain deletes it, after publishing it again, and the fast lane need not stall until it has.
// The rows to delete are an array, not a join, as in the take (takeStatement): planned once on
// an empty table, the join walked the table's whole index once a row.
func deleteFastStatement(table string) string {
	return `WITH mode AS (SELECT set_config('synchronous_commit', 'off', true) AS commit_mode)
		DELETE FROM ` + table + ` WHERE id = ANY(ARRAY(
			SELECT id FROM ` + table + ` WHERE id = ANY($1::bigint[]) AND (SELECT commit_mode = 'off' FROM mode)
			FOR UPDATE SKIP LOCKED
		))`
}

// drain publishes one batch. Drains keep per-table order across processes: a
// transaction-scoped advisory lock lets one relay at a time take, publish and delete. It reports
// whether a full batch was sent (so there may be more) and, if askEmptied, whether it took
// nothing while holding the lock (so every row queued before it began is published).
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
func (r *Relay) drain(ctx context.Context, askEmptied bool) (more, emptied bool, err error) {
	start := time.Now()
	conn, err := r.db.Connx(ctx)
	if err != nil {
		return false, false, fmt.Errorf("outbox: %w", err)
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
			return false, false, fmt.Errorf("outbox: prepare the take from %s: %w", r.table, err)
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
		return false, false, fmt.Errorf("outbox: take from %s: %w", r.table, err)
	}
	if len(rows) == 0 { // nothing queued, or another replica's relay is draining this table
		if !askEmptied {
			return false, false, nil
		}
		// Which one, the fast lane needs to know before it opens: only a take that held the
		// lock saw every row older than itself gone. The lock is held until the ROLLBACK.
		var held bool
		if err := conn.GetContext(ctx, &held, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
			AND pid = pg_backend_pid() AND granted AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2)`,
			r.lockID>>32, r.lockID&0xffffffff); err != nil {
			return false, false, fmt.Errorf("outbox: read the lock of %s: %w", r.table, err)
		}
		return false, held, nil
	}
	slices.SortFunc(rows, func(a, b outboxRow) int { return cmp.Compare(a.ID, b.ID) })
	msgs, err := decodeRows(rows, r.table)
	if err != nil {
		return false, false, err
	}
	taken := time.Now()
	if err := r.pub.Publish(ctx, msgs...); err != nil {
		return false, false, err
	}
	published := time.Now()
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		return false, false, fmt.Errorf("outbox: commit: %w", err) // the deferred ROLLBACK decides the connection's fate
	}
	inTx = false
	r.fast.forget(rows) // published: the fast lane need not send them again
	// Where a hop's time goes, for scripts/hops.sh: the take (BEGIN and the locking delete), the
	// publish (until the broker acknowledged) and the commit of the delete.
	r.log.Debug("outbox published", "messages", len(msgs), "take", taken.Sub(start),
		"publish", published.Sub(taken), "commit", time.Since(published))
	return len(msgs) == batchSize, false, nil
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
