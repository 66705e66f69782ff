package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/event"
)

// Handler processes one decoded event. Delivery is at least once (a rebalance or a crash before
// the commit redelivers), so every handler must be safe to run twice for the same event.
type Handler func(ctx context.Context, env event.Envelope) error

// Handlers routes events by type. Contract types without a handler are committed and skipped: a
// topic carries several types and a consumer may care about only some. A type outside the
// contract is dead-lettered.
type Handlers map[string]Handler

// On adapts a typed function to a Handler: the payload is decoded once, here, so a service's
// handlers receive the struct they expect.
func On[T any](fn func(ctx context.Context, env event.Envelope, payload T) error) Handler {
	return func(ctx context.Context, env event.Envelope) error {
		var payload T
		if err := env.Decode(&payload); err != nil {
			return err
		}
		return fn(ctx, env, payload)
	}
}

// BatchHandler handles the messages of one topic that were fetched together, in their order, in
// one go: one transaction and a few statements for all of them, where one each would spend
// most of the time on round trips to PostgreSQL. It is all or nothing: nil means every message
// was handled, an error that none was (its transaction rolled back). On an error the consumer
// handles them one at a time through Handlers, which retry and dead-letter as ever, so a batch
// handler may refuse anything out of the ordinary (a redelivery, a constraint hit) and leave it
// to the careful path.
type BatchHandler func(ctx context.Context, batch []Delivery) error

// Delivery is one message given to a BatchHandler.
type Delivery struct {
	Envelope event.Envelope
	Trace    string // the W3C traceparent it carried: put it in the context of what it causes
}

// maxBatch bounds the messages handled together.
const maxBatch = 256

// NotYet marks a wait by design: the handler needs something another topic brings (a contact, a
// booking row) and will succeed once it has been read. It is retried in place without the
// MaxStall bound, because parking it would drop the wait for good.
func NotYet(err error) error { return notYetError{err} }

type notYetError struct{ err error }

func (n notYetError) Error() string { return n.err.Error() }
func (n notYetError) Unwrap() error { return n.err }

func isNotYet(err error) bool {
	var n notYetError
	return errors.As(err, &n)
}

// Permanent marks an error that retrying cannot fix (bad data, not a bad moment): the message
// goes to the dead-letter topic and the partition moves on.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || errors.Is(err, event.ErrMalformed)
}

// ConsumerConfig names a consumer group, what it reads and how long a failing message may hold
// up its partition.
type ConsumerConfig struct {
	Cluster Cluster
	GroupID string   // as the contract names it; the cluster may put a namespace in front
	Topics  []string // as the contract names them
	// MaxStall bounds how long a transient failure is retried in place before the message is
	// dead-lettered so the partition moves on (it can be re-driven after the fix). Zero means
	// DefaultMaxStall.
	MaxStall time.Duration
	// Batch names the topics (as the contract names them) whose messages fetched together go
	// to a BatchHandler first.
	Batch map[string]BatchHandler
}

// SetMaxStall changes MaxStall; call it before Run.
func (c *Consumer) SetMaxStall(d time.Duration) { c.cfg.MaxStall = d }

// DefaultMaxStall is long enough to ride out a database restart or a provider's bad spell, and
// short enough that one bad message does not hold a partition for the evening.
const DefaultMaxStall = 10 * time.Minute

// Consumer is the one consume loop of Boxoffice: fetch → handle → commit after success. A
// transient failure is retried with backoff without committing; a permanent one is
// dead-lettered with the reason in a header, then committed.
type Consumer struct {
	cfg       ConsumerConfig
	handlers  Handlers
	publisher *Publisher
	log       *slog.Logger
	readers   int // group members this consumer runs, each with its own reader and loop
	// busy counts the members handling messages now. An idle member does not take a sibling's
	// long wait (a NotYet, an outage) for a stuck group: see checkIdle.
	busy atomic.Int32
}

// member is one group member of a Consumer: a reader and the consume loop over what the group
// gave it. Members of one process are independent, like members in different processes.
type member struct {
	*Consumer
	reader *kafkago.Reader

	stuck      map[string]int64 // lagging partitions' committed offsets at the last idle check
	stuckSince time.Time        // since when the idle checks have found them unmoved
	settling   time.Time        // since when the reader has reported only answers to wait out
}

// NewConsumer builds a group consumer. The reader settings are the measured ones from STACK.md:
// MinBytes 1 for low latency, MaxWait 500 ms (shorter polls time out and reconnect), a 6 s
// session so a dead member's partitions move within seconds, and a new group starting from the
// earliest offset so nothing written before it joined is missed.
func NewConsumer(cfg ConsumerConfig, handlers Handlers, publisher *Publisher, log *slog.Logger) *Consumer {
	log = log.With("group", cfg.GroupID)
	return &Consumer{cfg: cfg, handlers: handlers, publisher: publisher, log: log, readers: 1}
}

// SetReaders sets how many members of its group the consumer runs in this process; call it
// before Run. The group spreads its partitions over them, so messages of different partitions
// are handled at once, while each partition (and so each key) is still read in order by one
// member. Handling is bound by round trips to PostgreSQL, not by CPU, so members overlap their
// waits. More members than partitions leaves the extra ones idle.
func (c *Consumer) SetReaders(n int) { c.readers = max(n, 1) }

// HandleOneByOne turns the batch handlers off: every event goes to its ordinary handler alone,
// as when a batch is refused. For comparing the two paths, or ruling a batch handler out; call
// it before Run.
func (c *Consumer) HandleOneByOne() { c.cfg.Batch = nil }

func newReader(cfg ConsumerConfig, log *slog.Logger) *kafkago.Reader {
	return kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:           cfg.Cluster.Brokers,
		GroupID:           cfg.Cluster.Group(cfg.GroupID),
		GroupTopics:       cfg.Cluster.topics(cfg.Topics),
		MinBytes:          1,
		MaxBytes:          10 << 20,
		MaxWait:           500 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		CommitInterval:    100 * time.Millisecond,
		StartOffset:       kafkago.FirstOffset,
		ErrorLogger:       errorLogger(log, "kafka-reader"),
	})
}

// Run consumes until ctx is cancelled. The message being handled when that happens is finished
// and committed first (drain), then each reader leaves the group and flushes its commits. If one
// member fails, the others stop too and Run returns its error: the process exits, for its
// supervisor to start it again, as with a single member.
func (c *Consumer) Run(ctx context.Context) error {
	if c.readers <= 1 {
		return c.newMember().run(ctx)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	errs := make(chan error, c.readers)
	for range c.readers {
		m := c.newMember()
		go func() {
			err := m.run(ctx)
			stop()
			errs <- err
		}()
	}
	var first error
	for range c.readers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (c *Consumer) newMember() *member {
	return &member{Consumer: c, reader: newReader(c.cfg, c.log)}
}

// run is one member's consume loop.
func (c *member) run(ctx context.Context) error {
	defer func() {
		if c.reader == nil {
			return // a reader that would not close was left behind: the process is exiting
		}
		if err := c.reader.Close(); err != nil {
			c.log.Warn("close kafka reader", "err", err)
		}
	}()
	for {
		fetchCtx, cancel := context.WithTimeout(ctx, idleCheck)
		msg, err := c.reader.FetchMessage(fetchCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) {
				if err := c.checkIdle(ctx); err != nil {
					return err
				}
				continue
			}
			if c.stillSettling(ctx, err) {
				continue
			}
			// The reader reconnects by itself after most errors, but after a broker restart
			// kafka-go's group readers were seen to stall without a word (the crash test caught
			// one: a reader of the same process silent for good). A fresh process is the reliable
			// cure, so the consumer ends and its process exits, for its supervisor to start again:
			// offsets are committed only after effects, so nothing is lost.
			return fmt.Errorf("fetch from %v: %w", c.cfg.Topics, err)
		}
		c.stuck, c.settling = nil, time.Time{}
		msgs, fetchErr := c.fetchQueued(ctx, msg)
		// In-flight work is not cut off by shutdown: it finishes (or gives up) on its own clock.
		work := context.WithoutCancel(ctx)
		c.busy.Add(1)
		handled, finished := c.processAll(ctx, work, msgs)
		c.busy.Add(-1)
		if len(handled) > 0 {
			if err := c.reader.CommitMessages(work, handled...); err != nil {
				// The effects are recorded (with their event ids in the inbox): if the commit is
				// lost, the messages come again and change nothing.
				c.log.Warn("commit failed; messages may be delivered again", "messages", len(handled), "err", err)
			}
		}
		if !finished {
			return nil // shutting down while retrying: the message stays uncommitted
		}
		if fetchErr != nil {
			return fmt.Errorf("fetch from %v: %w", c.cfg.Topics, fetchErr)
		}
	}
}

// fetchQueued adds to first the messages the reader has already fetched, up to maxBatch, when the
// consumer has batch handlers: they are handled together. It never waits for the broker. A fetch
// error is returned for after the messages in hand are handled.
func (c *member) fetchQueued(ctx context.Context, first kafkago.Message) ([]kafkago.Message, error) {
	msgs := []kafkago.Message{first}
	if len(c.cfg.Batch) == 0 {
		return msgs, nil
	}
	for len(msgs) < maxBatch && c.reader.Stats().QueueLength > 0 {
		// Queued messages come at once; the timeout covers a queue holding only messages of
		// an assignment the reader has since left, which it skips.
		fetchCtx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		msg, err := c.reader.FetchMessage(fetchCtx)
		cancel()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				return msgs, nil
			}
			return msgs, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// processAll handles msgs: those of a batch topic together first, then the rest one at a time
// in order (messages of different topics are never ordered relative to each other). It returns
// the messages handled, to commit, and false if shutdown interrupted a retry.
func (c *member) processAll(stop, work context.Context, msgs []kafkago.Message) ([]kafkago.Message, bool) {
	done := make([]bool, len(msgs))
	// A batch takes, per partition, only the messages before the first one it cannot take (a
	// re-driven one, say): those after it wait for it, one at a time, so each partition is
	// still handled in order.
	type partition struct {
		topic string
		id    int
	}
	stopped := map[partition]bool{}
	byTopic := map[string][]int{}
	batches := map[string][]Delivery{}
	for i, m := range msgs {
		topic := c.cfg.Cluster.Unqualified(m.Topic)
		p := partition{m.Topic, m.Partition}
		if _, ok := c.cfg.Batch[topic]; !ok || stopped[p] {
			continue
		}
		env, err := event.Decode(m.Value)
		if err != nil || headerValue(m.Headers, HeaderRedriveFor) != "" {
			stopped[p] = true // the careful path dead-letters it, or knows whom it is for
			continue
		}
		if _, handled := c.handlers[env.Type]; !handled && event.Known(env.Type) {
			done[i] = true // another service's business (a rejection, to payment): nothing to do
			continue
		}
		tp := headerValue(m.Headers, event.HeaderTraceparent)
		if tp == "" {
			tp = env.Traceparent
		}
		byTopic[topic] = append(byTopic[topic], i)
		batches[topic] = append(batches[topic], Delivery{Envelope: env, Trace: tp})
	}
	for topic, idx := range byTopic {
		// A lone event takes the batch path too: its few prepared statements cost less than the
		// one-by-one path's several (at 100 bookings a second, a tenth of all statements and most
		// of the planning), and a refusal still leaves it to that careful path.
		batch := batches[topic]
		start := time.Now()
		if err := c.cfg.Batch[topic](work, batch); err != nil {
			// A lone event refused is routine (a declined card's release, an expired hold, a
			// stage before its booking): worth a line only when debugging.
			level := slog.LevelInfo
			if len(batch) == 1 {
				level = slog.LevelDebug
			}
			c.log.Log(work, level, "batch handled one at a time instead", "topic", topic, "messages", len(batch), "reason", err)
			continue
		}
		took := time.Since(start)
		// The arguments (a header parsed, a trace id split) cost more than the call: only when
		// debug lines are written at all.
		debug := c.log.Enabled(work, slog.LevelDebug)
		for n, i := range idx {
			done[i] = true
			if debug {
				c.log.Debug("event handled", "type", batch[n].Envelope.Type, "booking_id", batch[n].Envelope.BookingID,
					"trace_id", TraceID(batch[n].Trace), "topic", topic, "partition", msgs[i].Partition,
					"waited", start.Sub(sentAt(msgs[i])), "took", took, "batch", len(batch))
			}
		}
	}
	handled := make([]kafkago.Message, 0, len(msgs))
	for i, m := range msgs {
		if !done[i] && !c.process(stop, work, m) {
			return handled, false
		}
		handled = append(handled, m)
	}
	return handled, true
}

// waitedOut tells the answers a broker gives while its cluster settles (a new broker creating
// its offsets topic, a partition just created with no leader yet, a leader moving, a rebalance
// as the process's own members join): those kafka-go calls temporary, and a rebalance under way.
// kafka-go goes on trying by itself after passing them on.
func waitedOut(err error) bool {
	var kerr kafkago.Error
	return errors.As(err, &kerr) && (kerr.Temporary() || kerr == kafkago.RebalanceInProgress)
}

// settlePatience is how long a member waits out such answers before it ends like any failed
// fetch (a fresh process is the cure for a reader that never gets there).
const settlePatience = 30 * time.Second

// stillSettling reports whether err is an answer to wait out: it is logged, and the fetch is
// tried again after a moment. Ending the consumer on one, as on any other error, stopped
// services for good in tests on a fresh Apache Kafka broker, where nothing restarts them.
func (c *member) stillSettling(ctx context.Context, err error) bool {
	if !waitedOut(err) {
		return false
	}
	if c.settling.IsZero() {
		c.settling = time.Now()
	}
	if time.Since(c.settling) > settlePatience {
		return false
	}
	c.log.Warn("broker still settling; fetching again", "err", err)
	select {
	case <-ctx.Done():
	case <-time.After(250 * time.Millisecond):
	}
	return true
}

// idleCheck is how long a fetch may wait for a message before the consumer checks that its
// group is not stuck.
const idleCheck = 10 * time.Second

// checkIdle runs when nothing arrived for idleCheck. If the group has messages waiting on
// partitions whose committed offsets have not moved for longer than a live member may retry one
// message (MaxStall, plus a margin), some member holds them without reading: the crash test
// caught the embedded broker keeping a killed process's member in a group for good, its
// partitions orphaned. Joining again makes the group rebalance, and a member that does not
// rejoin is dropped, so the partitions find a reader. A member that is slow, or retrying through
// an outage, moves its offsets or gives up within MaxStall, and is left alone.
func (c *member) checkIdle(ctx context.Context) error {
	if c.busy.Load() > 0 {
		// A member of this process is at work on its partitions, maybe retrying a message
		// for as long as it takes: their unmoved offsets are not a sign of a lost member, and
		// rejoining would only hand its partitions to another member that waits the same way.
		c.stuck = nil
		return nil
	}
	checkCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	offsets, err := GroupOffsets(checkCtx, c.cfg.Cluster, Subscription{Group: c.cfg.GroupID, Topics: c.cfg.Topics})
	if err != nil {
		return nil // the broker is busy or away: the next check will tell
	}
	lagging := map[string]int64{}
	for _, o := range offsets {
		if o.Lag > 0 {
			lagging[o.Topic+"/"+strconv.Itoa(o.Partition)] = o.Committed
		}
	}
	if len(lagging) == 0 || !maps.Equal(lagging, c.stuck) {
		c.stuck, c.stuckSince = lagging, time.Now()
		return nil
	}
	maxStall := c.cfg.MaxStall
	if maxStall <= 0 {
		maxStall = DefaultMaxStall
	}
	if time.Since(c.stuckSince) < maxStall+30*time.Second {
		return nil
	}
	c.log.Warn("partitions with messages waiting and nobody reading them; joining the group again", "partitions", lagging)
	// Close waits for the reader's goroutines; a wedged one may never end, and then only a
	// fresh process helps.
	closed := make(chan error, 1)
	go func() { closed <- c.reader.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			c.log.Warn("close kafka reader", "err", err)
		}
	case <-time.After(15 * time.Second):
		// Closing it again on the way out would block the same way: leave it.
		c.reader = nil
		return fmt.Errorf("group %s: the stuck reader did not close; exiting for a fresh start", c.cfg.GroupID)
	}
	c.reader = newReader(c.cfg, c.log)
	c.stuck = nil
	return nil
}

// process handles one message. A permanent failure is dead-lettered at once; a transient one is
// retried with capped exponential backoff in place (order within the partition holds) for up
// to MaxStall, then dead-lettered too. It reports false if shutdown interrupted the retries.
func (c *Consumer) process(stop, work context.Context, msg kafkago.Message) bool {
	backoff := 50 * time.Millisecond
	maxStall := c.cfg.MaxStall
	if maxStall <= 0 {
		maxStall = DefaultMaxStall
	}
	first := time.Now()
	// Failures are about a booking too: log them with its id and trace when the message says.
	logCtx, about := work, c.log
	if env, err := event.Decode(msg.Value); err == nil {
		tp := headerValue(msg.Headers, event.HeaderTraceparent)
		if tp == "" {
			tp = env.Traceparent
		}
		logCtx, about = WithTrace(work, tp), c.log.With("booking_id", env.BookingID, "type", env.Type)
	}
	for attempt := 1; ; attempt++ {
		err := c.handle(work, msg)
		if err == nil {
			return true
		}
		log := about.With("topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "attempt", attempt, "err", err)
		if !isPermanent(err) && !isNotYet(err) && time.Since(first) >= maxStall {
			err = Permanent(fmt.Errorf("gave up after %d attempts over %s: %w", attempt, time.Since(first).Round(time.Second), err))
		}
		if isPermanent(err) {
			log.ErrorContext(logCtx, "event cannot be processed; sending it to the dead-letter topic")
			dlErr := c.deadLetter(work, msg, err, attempt)
			if dlErr == nil {
				return true
			}
			log = log.With("dead_letter_err", dlErr)
		}
		log.WarnContext(logCtx, "event handling failed; retrying", "backoff", backoff)
		select {
		case <-stop.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (c *Consumer) handle(ctx context.Context, msg kafkago.Message) error {
	if group := headerValue(msg.Headers, HeaderRedriveFor); group != "" && group != c.cfg.GroupID {
		return nil // re-driven for another group
	}
	env, err := event.Decode(msg.Value)
	if err != nil {
		return err
	}
	handler, ok := c.handlers[env.Type]
	if !ok {
		if !event.Known(env.Type) {
			return Permanent(fmt.Errorf("unknown event type %q", env.Type))
		}
		return nil
	}
	traceparent := headerValue(msg.Headers, event.HeaderTraceparent)
	if traceparent == "" {
		traceparent = env.Traceparent
	}
	ctx = WithTrace(ctx, traceparent)
	start := time.Now()
	if err := handler(ctx, env); err != nil {
		return err
	}
	if c.log.Enabled(ctx, slog.LevelDebug) {
		c.log.Debug("event handled", "type", env.Type, "booking_id", env.BookingID,
			"trace_id", TraceID(traceparent), "topic", c.cfg.Cluster.Unqualified(msg.Topic), "partition", msg.Partition,
			"waited", start.Sub(sentAt(msg)), "took", time.Since(start))
	}
	return nil
}

// sentAt is when msg was sent: its publisher's header, or else (a message from another producer)
// its Kafka timestamp, to the millisecond.
func sentAt(msg kafkago.Message) time.Time {
	if ns, err := strconv.ParseInt(headerValue(msg.Headers, event.HeaderSentAt), 10, 64); err == nil {
		return time.Unix(0, ns)
	}
	return msg.Time
}

// deadLetter parks msg on <topic>.dlt with the reason in headers. If that fails the caller
// retries, so a message is never committed without landing somewhere. Like every effect here it
// is at least once: a rebalance between the park and the commit has the partition's next member
// park it again (re-driving both copies is harmless: handlers are idempotent).
func (c *Consumer) deadLetter(ctx context.Context, msg kafkago.Message, cause error, attempts int) error {
	headers := append([]kafkago.Header{}, msg.Headers...)
	headers = append(headers,
		kafkago.Header{Key: "dlt-error", Value: []byte(event.ShortReason(cause.Error()))},
		kafkago.Header{Key: "dlt-source-topic", Value: []byte(c.cfg.Cluster.Unqualified(msg.Topic))},
		kafkago.Header{Key: "dlt-source-partition", Value: []byte(itoa(int64(msg.Partition)))},
		kafkago.Header{Key: "dlt-source-offset", Value: []byte(itoa(msg.Offset))},
		kafkago.Header{Key: "dlt-attempts", Value: []byte(itoa(int64(attempts)))},
		kafkago.Header{Key: "dlt-group", Value: []byte(c.cfg.GroupID)},
	)
	return c.publisher.publishRaw(ctx, kafkago.Message{
		Topic: c.cfg.Cluster.Topic(DeadLetterTopic(c.cfg.Cluster.Unqualified(msg.Topic))), Key: msg.Key, Value: msg.Value, Headers: headers,
	})
}
