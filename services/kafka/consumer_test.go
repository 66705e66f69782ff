package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// broker starts an in-memory embedded broker with one single-partition topic, so the order of
// messages is the order of the test.
func broker(t *testing.T, topic string) kafka.Cluster {
	t.Helper()
	b, err := kafka.StartEmbedded(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	// A namespace, as when several installations share a cluster: every name below is the
	// contract's, and the package must map it both ways.
	cluster := kafka.Cluster{Brokers: b.Addrs(), Namespace: "staging"}
	if err := kafka.EnsureTopics(context.Background(), cluster, kafka.TopicSpec{Partitions: 1}, topic); err != nil {
		t.Fatal(err)
	}
	return cluster
}

func envelope(t *testing.T) event.Envelope {
	t.Helper()
	env, err := event.New(event.TypeTicketIssued, uuid.NewString(), event.TicketIssued{Code: "ABC-DEFG"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// consume runs a consumer until want handled bookings were seen, returning them in order.
func consume(t *testing.T, cluster kafka.Cluster, topic string, pub *kafka.Publisher, handler kafka.Handler, want int) []string {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	done := make(chan struct{})
	c := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic}},
		kafka.Handlers{event.TypeTicketIssued: func(ctx context.Context, env event.Envelope) error {
			if err := handler(ctx, env); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, env.BookingID)
			if len(seen) == want {
				close(done)
			}
			return nil
		}}, pub, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("handled %d of %d messages in 20s", len(seen), want)
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatalf("consumer stopped with %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return seen
}

// TestPoisonMessageIsDeadLetteredAndTheGoodOnesFlow: an undecodable message between two good
// ones lands on <topic>.dlt with the reason in a header; the partition moves on.
func TestPoisonMessageIsDeadLetteredAndTheGoodOnesFlow(t *testing.T) {
	const topic = "test-poison"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	ctx := context.Background()

	first, second := envelope(t), envelope(t)
	if err := pub.Publish(ctx, kafka.Message{Topic: topic, Key: "k", Envelope: first}); err != nil {
		t.Fatal(err)
	}
	raw := &kafkago.Writer{Addr: kafkago.TCP(cluster.Brokers...), BatchTimeout: time.Millisecond, RequiredAcks: kafkago.RequireAll}
	defer raw.Close()
	if err := raw.WriteMessages(ctx, kafkago.Message{Topic: cluster.Topic(topic), Key: []byte("k"), Value: []byte(`{"not":"an envelope"`)}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, kafka.Message{Topic: topic, Key: "k", Envelope: second}); err != nil {
		t.Fatal(err)
	}

	seen := consume(t, cluster, topic, pub, func(context.Context, event.Envelope) error { return nil }, 2)
	if len(seen) != 2 || seen[0] != first.BookingID || seen[1] != second.BookingID {
		t.Fatalf("handled %v, want the two good messages in order", seen)
	}

	dlt := kafkago.NewReader(kafkago.ReaderConfig{Brokers: cluster.Brokers, Topic: cluster.Topic(kafka.DeadLetterTopic(topic)), Partition: 0, MaxWait: 500 * time.Millisecond})
	defer dlt.Close()
	readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := dlt.ReadMessage(readCtx)
	if err != nil {
		t.Fatalf("nothing on the dead-letter topic: %v", err)
	}
	headers := map[string]string{}
	for _, h := range msg.Headers {
		headers[h.Key] = string(h.Value)
	}
	if string(msg.Value) != `{"not":"an envelope"` || headers["dlt-error"] == "" || headers["dlt-source-topic"] != topic ||
		headers["dlt-source-offset"] != "1" || headers["dlt-attempts"] != "1" {
		t.Errorf("dead letter %q with headers %v", msg.Value, headers)
	}
}

// TestTransientFailureIsRetriedInPlace: a handler that fails for a while is retried without
// committing, and the next message waits for it (order within a partition holds).
func TestTransientFailureIsRetriedInPlace(t *testing.T) {
	const topic = "test-retry"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	first, second := envelope(t), envelope(t)
	if err := pub.Publish(context.Background(),
		kafka.Message{Topic: topic, Key: "k", Envelope: first},
		kafka.Message{Topic: topic, Key: "k", Envelope: second}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	seen := consume(t, cluster, topic, pub, func(_ context.Context, env event.Envelope) error {
		if env.BookingID == first.BookingID {
			attempts++
			if attempts < 3 {
				return errors.New("database unavailable")
			}
		}
		return nil
	}, 2)
	if attempts != 3 || len(seen) != 2 || seen[0] != first.BookingID {
		t.Errorf("%d attempts, handled %v: want 3 attempts and the first message first", attempts, seen)
	}
}

// TestEmbeddedBrokerOwnsItsDataDir: a second broker on the same data dir (a second `make run`)
// is refused instead of corrupting the first one's log.
func TestEmbeddedBrokerOwnsItsDataDir(t *testing.T) {
	dir := t.TempDir()
	first, err := kafka.StartEmbedded(0, dir)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := kafka.StartEmbedded(0, dir); err == nil {
		second.Close()
		t.Fatal("a second broker started on a data dir in use")
	}
	first.Close()
	again, err := kafka.StartEmbedded(0, dir)
	if err != nil {
		t.Fatalf("the data dir stayed locked after the first broker closed: %v", err)
	}
	again.Close()
}

// TestStalledMessageIsParkedThenRedriven: a message that keeps failing for longer than MaxStall
// is dead-lettered so the partition moves on; once the cause is fixed, re-driving sends it back
// and it is handled — once, however often the re-drive runs.
func TestStalledMessageIsParkedThenRedriven(t *testing.T) {
	const topic = "test-stall"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	ctx := context.Background()
	stuck, next := envelope(t), envelope(t)
	if err := pub.Publish(ctx, kafka.Message{Topic: topic, Key: "k", Envelope: stuck}, kafka.Message{Topic: topic, Key: "k", Envelope: next}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	broken := true
	var handled []string
	done := make(chan struct{}, 10)
	c := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic}, MaxStall: 300 * time.Millisecond},
		kafka.Handlers{event.TypeTicketIssued: func(_ context.Context, env event.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			if env.BookingID == stuck.BookingID && broken {
				return errors.New("database unavailable")
			}
			handled = append(handled, env.BookingID)
			done <- struct{}{}
			return nil
		}}, pub, quiet)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = c.Run(runCtx) }()

	<-done // the next message got through: the stuck one was parked
	letters, err := kafka.ListDeadLetters(ctx, cluster, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 || letters[0].BookingID != stuck.BookingID || letters[0].SourceTopic != topic ||
		!strings.Contains(letters[0].Error, "gave up after") || !strings.Contains(letters[0].Error, "database unavailable") {
		t.Fatalf("dead letters %+v, want the stuck message with why it was given up", letters)
	}

	mu.Lock()
	broken = false
	mu.Unlock()
	for range 2 {
		n, err := kafka.Redrive(ctx, cluster, pub, []string{topic})
		if err != nil {
			t.Fatal(err)
		}
		if n > 1 {
			t.Errorf("re-drove %d messages, want the one dead letter once", n)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the re-driven message was not handled")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) != 2 || handled[1] != stuck.BookingID {
		t.Errorf("handled %v, want the next message, then the re-driven one", handled)
	}
}

func TestUnknownEventTypeIsDeadLettered(t *testing.T) {
	const topic = "test-unknown"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	odd, good := envelope(t), envelope(t)
	odd.Type = "ticket.reprinted"
	if err := pub.Publish(context.Background(), kafka.Message{Topic: topic, Key: "k", Envelope: odd}, kafka.Message{Topic: topic, Key: "k", Envelope: good}); err != nil {
		t.Fatal(err)
	}
	seen := consume(t, cluster, topic, pub, func(context.Context, event.Envelope) error { return nil }, 1)
	letters, err := kafka.ListDeadLetters(context.Background(), cluster, []string{topic})
	if err != nil {
		t.Fatal(err)
	}
	if seen[0] != good.BookingID || len(letters) != 1 || !strings.Contains(letters[0].Error, "unknown event type") {
		t.Errorf("handled %v, dead letters %+v", seen, letters)
	}
}

// TestAWaitByDesignIsNeverParked: "not yet" (the contact is on another topic, still unread)
// outlasts MaxStall without being dead-lettered, and is handled once what it waits for arrives.
func TestAWaitByDesignIsNeverParked(t *testing.T) {
	const topic = "test-notyet"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	waiting := envelope(t)
	if err := pub.Publish(context.Background(), kafka.Message{Topic: topic, Key: "k", Envelope: waiting}); err != nil {
		t.Fatal(err)
	}
	arrives := time.Now().Add(time.Second) // well past the 200 ms MaxStall below
	handled := make(chan struct{})
	c := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic}, MaxStall: 200 * time.Millisecond},
		kafka.Handlers{event.TypeTicketIssued: func(context.Context, event.Envelope) error {
			if time.Now().Before(arrives) {
				return kafka.NotYet(errors.New("contact not yet known"))
			}
			close(handled)
			return nil
		}}, pub, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	select {
	case <-handled:
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting message was never handled")
	}
	letters, err := kafka.ListDeadLetters(context.Background(), cluster, []string{topic})
	if err != nil || len(letters) != 0 {
		t.Errorf("dead letters %v (%v): a wait by design was parked", letters, err)
	}
}

// TestReadersShareTheWorkAndKeepEachKeyInOrder: a consumer running three members of its group
// handles messages of different partitions at once, while each key's messages still come in the
// order they were published.
func TestReadersShareTheWorkAndKeepEachKeyInOrder(t *testing.T) {
	const topic = "test-readers"
	b, err := kafka.StartEmbedded(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cluster := kafka.Cluster{Brokers: b.Addrs()}
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, cluster, kafka.TopicSpec{Partitions: 6}, topic); err != nil {
		t.Fatal(err)
	}
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()

	const keys, perKey = 12, 20
	bookings := make([]string, keys)
	for k := range bookings {
		bookings[k] = uuid.NewString()
	}
	var msgs []kafka.Message
	for seq := range perKey {
		for _, booking := range bookings {
			env, err := event.New(event.TypeTicketIssued, booking, event.TicketIssued{Code: fmt.Sprintf("%03d", seq)}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, kafka.Message{Topic: topic, Key: booking, Envelope: env})
		}
	}
	if err := pub.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	firstSeen := map[string][]string{} // booking → sequence numbers, first deliveries only
	seen := map[string]bool{}
	inFlight, maxInFlight := 0, 0
	done := make(chan struct{})
	c := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic}},
		kafka.Handlers{event.TypeTicketIssued: kafka.On(func(_ context.Context, env event.Envelope, p event.TicketIssued) error {
			mu.Lock()
			inFlight++
			maxInFlight = max(maxInFlight, inFlight)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // a database round trip or two
			mu.Lock()
			defer mu.Unlock()
			inFlight--
			// A rebalance while the members join may deliver a message twice (at least once);
			// only first deliveries are checked for order.
			if id := env.BookingID + "/" + p.Code; !seen[id] {
				seen[id] = true
				firstSeen[env.BookingID] = append(firstSeen[env.BookingID], p.Code)
				if len(seen) == keys*perKey {
					close(done)
				}
			}
			return nil
		})}, pub, quiet)
	c.SetReaders(3)
	runUntil(t, c, done, 30*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("handled %d of %d messages", len(seen), keys*perKey)
	})
	mu.Lock()
	defer mu.Unlock()
	for booking, codes := range firstSeen {
		if !slices.IsSorted(codes) {
			t.Errorf("key %s handled out of order: %v", booking, codes)
		}
	}
	if maxInFlight < 2 {
		t.Errorf("at most %d message handled at a time by three members over six partitions, want several", maxInFlight)
	}
}

// TestBatchHandlerTakesWhatWasFetchedTogetherAndFallsBackOneByOne: messages waiting in the reader
// go to the batch handler together; when it refuses a batch, each of its messages goes to the
// ordinary handler instead, in order. Every message is handled once either way.
func TestBatchHandlerTakesWhatWasFetchedTogetherAndFallsBackOneByOne(t *testing.T) {
	const topic = "test-batch"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	ctx := context.Background()
	const total = 200
	var msgs []kafka.Message
	var want []string
	for i := range total {
		env := envelope(t)
		msgs = append(msgs, kafka.Message{Topic: topic, Key: "k", Envelope: env})
		want = append(want, env.BookingID)
		if i%5 == 0 {
			// Among them, events of a type this consumer has no handler for: nothing to do.
			other := envelope(t)
			other.Type = event.TypeBookingRejected
			msgs = append(msgs, kafka.Message{Topic: topic, Key: "k", Envelope: other})
		}
	}
	if err := pub.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var handled []string // in the order they took effect
	var strangers []string
	refused, largest := 0, 0
	done := make(chan struct{})
	record := func(ids ...string) {
		handled = append(handled, ids...)
		if len(handled) == total {
			close(done)
		}
	}
	c := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic},
		Batch: map[string]kafka.BatchHandler{topic: func(_ context.Context, batch []kafka.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			largest = max(largest, len(batch))
			if refused == 0 && len(batch) >= 2 { // the first batch of several (a lone event may come first)
				refused = len(batch)
				return errors.New("refused: the careful path decides these")
			}
			for _, d := range batch {
				if d.Envelope.Type != event.TypeTicketIssued {
					strangers = append(strangers, d.Envelope.Type)
				}
				record(d.Envelope.BookingID)
			}
			return nil
		}}},
		kafka.Handlers{event.TypeTicketIssued: func(_ context.Context, env event.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			record(env.BookingID)
			return nil
		}}, pub, quiet)
	runUntil(t, c, done, 20*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("handled %d of %d", len(handled), total)
	})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(handled) != fmt.Sprint(want) {
		t.Errorf("messages handled out of order or more than once")
	}
	if len(strangers) > 0 {
		t.Errorf("the batch handler was given %d events it has no handler for (%s)", len(strangers), strangers[0])
	}
	if largest < 2 || refused < 2 {
		t.Errorf("largest batch %d, refused batch %d: messages waiting together were not batched", largest, refused)
	}
}

// TestALoneEventTakesTheBatchPath: one event fetched alone goes to its topic's batch handler
// too (a few prepared statements, where the one-by-one path takes several), not to the ordinary
// handler; its ordinary handler is the fallback, as for any batch refused.
func TestALoneEventTakesTheBatchPath(t *testing.T) {
	const topic = "test-lone"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	env := envelope(t)
	if err := pub.Publish(context.Background(), kafka.Message{Topic: topic, Key: "k", Envelope: env}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var batches [][]string
	oneByOne := 0
	done := make(chan struct{})
	c := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic},
		Batch: map[string]kafka.BatchHandler{topic: func(_ context.Context, batch []kafka.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			var ids []string
			for _, d := range batch {
				ids = append(ids, d.Envelope.BookingID)
			}
			batches = append(batches, ids)
			if len(batches) == 1 {
				close(done)
			}
			return nil
		}}},
		kafka.Handlers{event.TypeTicketIssued: func(context.Context, event.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			oneByOne++
			return nil
		}}, pub, quiet)
	runUntil(t, c, done, 20*time.Second, func() string { return "the batch handler was not called" })
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 1 || fmt.Sprint(batches[0]) != fmt.Sprint([]string{env.BookingID}) || oneByOne != 0 {
		t.Errorf("batch handler got %v, ordinary handler %d calls; want one batch of the one event and no ordinary call", batches, oneByOne)
	}
}

// TestBatchNeverOvertakesAReDrivenMessage: a message re-driven from the dead-letter topic sits
// among fresh ones in its partition. The batch takes only what comes before it; it and what
// follows are handled after, in order.
func TestBatchNeverOvertakesAReDrivenMessage(t *testing.T) {
	const topic = "test-redriven"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	ctx := context.Background()
	raw := &kafkago.Writer{Addr: kafkago.TCP(cluster.Brokers...), BatchTimeout: time.Millisecond, RequiredAcks: kafkago.RequireAll}
	defer raw.Close()
	var want []string
	var msgs []kafkago.Message
	for i := range 40 {
		env := envelope(t)
		want = append(want, env.BookingID)
		value, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		m := kafkago.Message{Topic: cluster.Topic(topic), Key: []byte("k"), Value: value}
		if i == 5 {
			m.Headers = []kafkago.Header{{Key: kafka.HeaderRedriveFor, Value: []byte("test")}}
		}
		msgs = append(msgs, m)
	}
	if err := raw.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var handled []string
	done := make(chan struct{})
	record := func(ids ...string) {
		handled = append(handled, ids...)
		if len(handled) == len(want) {
			close(done)
		}
	}
	c := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic},
		Batch: map[string]kafka.BatchHandler{topic: func(_ context.Context, batch []kafka.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range batch {
				record(d.Envelope.BookingID)
			}
			return nil
		}}},
		kafka.Handlers{event.TypeTicketIssued: func(_ context.Context, env event.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			record(env.BookingID)
			return nil
		}}, pub, quiet)
	runUntil(t, c, done, 20*time.Second, func() string { return "not every message was handled" })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(handled) != fmt.Sprint(want) {
		t.Errorf("handled out of order around the re-driven message:\n got %v\nwant %v", handled, want)
	}
}

// runUntil runs c until done is closed, then stops it and checks that it stopped cleanly. If done
// is not closed within the time, the test fails with what progress says.
func runUntil(t *testing.T, c *kafka.Consumer, done <-chan struct{}, within time.Duration, progress func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- c.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(within):
		cancel()
		t.Fatalf("%s within %s", progress(), within)
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Fatalf("consumer stopped with %v", err)
	}
}
