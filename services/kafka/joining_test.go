package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// TestMembersWaitOutAGroupBeingFormed: the answers a broker gives while a group forms (a new
// broker creating its offsets topic, a rebalance as the process's own members join) are waited
// out, for a while; anything else, or the same for too long, ends the member as before, for a
// fresh process.
func TestMembersWaitOutAGroupBeingFormed(t *testing.T) {
	ctx := context.Background()
	m := &member{Consumer: &Consumer{log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	for _, err := range []error{kafkago.RebalanceInProgress, kafkago.NotCoordinatorForGroup,
		kafkago.GroupCoordinatorNotAvailable, fmt.Errorf("fetch: %w", kafkago.GroupLoadInProgress)} {
		if !m.stillJoining(ctx, err) {
			t.Errorf("%v: the member ended; want it to wait the group out", err)
		}
	}
	for _, err := range []error{kafkago.UnknownTopicOrPartition, errors.New("connection refused")} {
		if m.stillJoining(ctx, err) {
			t.Errorf("%v: waited out; want the member to end", err)
		}
	}
	m.joining = time.Now().Add(-joinPatience - time.Second)
	if m.stillJoining(ctx, kafkago.RebalanceInProgress) {
		t.Errorf("still waiting after %s of a group that never forms; want the member to end", joinPatience)
	}
}
