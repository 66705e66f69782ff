package kafka_test

import (
	"context"
	"testing"

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
	for range 3 {
		if err := pub.Publish(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	if n := pub.Produces(); n != 3 {
		t.Errorf("three calls of 500 messages for one partition took %d produce requests; want 3", n)
	}
	got := consume(t, cluster, topic, pub, func(context.Context, event.Envelope) error { return nil }, 1501)
	if len(got) != 1501 {
		t.Errorf("read %d messages back; want 1501", len(got))
	}
}
