package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// TestGroupOffsetsAndRewind: a group that read everything has no lag; a stopped group can be
// moved to a moment (the first message at or after it), an offset, the start or the end; a
// group with members is never moved under them.
func TestGroupOffsetsAndRewind(t *testing.T) {
	const topic = "test-rewind"
	cluster := broker(t, topic)
	pub := kafka.NewPublisher(cluster, quiet)
	defer pub.Close()
	ctx := context.Background()
	publish := func(n int) {
		for range n {
			if err := pub.Publish(ctx, kafka.Message{Topic: topic, Key: "k", Envelope: envelope(t)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(3)
	time.Sleep(50 * time.Millisecond)
	middle := time.Now()
	time.Sleep(50 * time.Millisecond)
	publish(2)
	consume(t, cluster, topic, pub, func(context.Context, event.Envelope) error { return nil }, 5)

	sub := kafka.Subscription{Group: "test", Topics: []string{topic}}
	at := func() kafka.PartitionOffset {
		t.Helper()
		offsets, err := kafka.GroupOffsets(ctx, cluster, sub)
		if err != nil || len(offsets) != 1 {
			t.Fatalf("offsets %v, %v", offsets, err)
		}
		return offsets[0]
	}
	if o := at(); o.Committed != 5 || o.End != 5 || o.Lag != 0 || o.Topic != topic {
		t.Errorf("after reading everything: %+v, want committed 5 of 5, no lag, under the contract's topic name", o)
	}
	for _, tc := range []struct {
		to        kafka.RewindTarget
		committed int64
	}{
		{kafka.RewindTarget{At: middle}, 3},
		{kafka.RewindTarget{Offset: 1}, 1},
		{kafka.RewindTarget{Earliest: true}, 0},
		{kafka.RewindTarget{At: time.Now().Add(time.Hour)}, 5},
		{kafka.RewindTarget{Offset: 99}, 5},
		{kafka.RewindTarget{Latest: true}, 5},
	} {
		if _, err := kafka.RewindGroup(ctx, cluster, sub, tc.to); err != nil {
			t.Fatal(err)
		}
		if o := at(); o.Committed != tc.committed || o.Lag != 5-tc.committed {
			t.Errorf("rewound to %+v: %+v, want committed %d", tc.to, o, tc.committed)
		}
	}

	// With a member reading, the group is left alone.
	running := kafka.NewConsumer(kafka.ConsumerConfig{Cluster: cluster, GroupID: "test", Topics: []string{topic}}, kafka.Handlers{}, pub, quiet)
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- running.Run(runCtx) }()
	defer func() { stop(); <-stopped }()
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; n == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		n, _ = kafka.GroupMembers(ctx, cluster, "test")
	}
	if _, err := kafka.RewindGroup(ctx, cluster, sub, kafka.RewindTarget{Earliest: true}); !errors.Is(err, kafka.ErrGroupActive) {
		t.Errorf("rewind with a member: %v, want ErrGroupActive", err)
	}
}
