package kafka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// TestOneCallIsOneProducePerPartition: the writer sends without waiting for more messages, and
// still sends one call's messages for a partition together, never one request a message (under
// a burst that was ~50× slower, STACK.md). A relay's whole drain, 500 events, is one request: a
// drain split over several, one of them failing, would be republished out of order.
func TestOneCallIsOneProducePerPartition(t *testing.T) {
	const topic = "booking-movie"
	cluster := broker(t, topic) // one partition
	pub := kafka.NewPublisher(cluster, quiet)
	t.Cleanup(func() { _ = pub.Close() })
	ctx := context.Background()
	msgs := make([]kafka.Message, 500)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: topic, Key: "show-1", Envelope: envelope(t)}
	}
	if err := pub.Publish(ctx, msgs[:1]...); err != nil { // the first call also learns the partitions
		t.Fatal(err)
	}
	pub.Produces()
	want := 1
	// Calls either side of the small writer's limit, and a whole drain.
	for _, size := range []int{kafka.SmallPublish, kafka.SmallPublish + 1, 500} {
		for range 3 {
			if err := pub.Publish(ctx, msgs[:size]...); err != nil {
				t.Fatal(err)
			}
		}
		if n := pub.Produces(); n != 3 {
			t.Errorf("three calls of %d messages for one partition took %d produce requests; want 3", size, n)
		}
		want += 3 * size
	}
	got := consume(t, cluster, topic, pub, func(context.Context, event.Envelope) error { return nil }, want)
	if len(got) != want {
		t.Errorf("read %d messages back; want %d", len(got), want)
	}
}

// TestMessagesSayWhenTheyWereSent: every published message carries its send time to the
// nanosecond (sent-at), which a consumer times its wait from; Kafka's own timestamp has whole
// milliseconds, as much as a hop's wait on one machine.
func TestMessagesSayWhenTheyWereSent(t *testing.T) {
	const topic = "ticket-details"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	t.Cleanup(func() { _ = pub.Close() })
	ctx := context.Background()
	before := time.Now()
	if err := pub.Publish(ctx, kafka.Message{Topic: topic, Key: "k", Envelope: envelope(t)}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: cluster.Brokers, Topic: cluster.Topic(topic), MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond})
	t.Cleanup(func() { _ = r.Close() })
	readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := r.ReadMessage(readCtx)
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	for _, h := range m.Headers {
		if h.Key == event.HeaderSentAt {
			sent = append(sent, string(h.Value))
		}
	}
	if len(sent) != 1 {
		t.Fatalf("message has %d %s headers (%q); want one", len(sent), event.HeaderSentAt, sent)
	}
	ns, err := strconv.ParseInt(sent[0], 10, 64)
	if at := time.Unix(0, ns); err != nil || at.Before(before) || at.After(after) {
		t.Errorf("%s = %q; want Unix nanoseconds between %v and %v", event.HeaderSentAt, sent[0], before, after)
	}
}
