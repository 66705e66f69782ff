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

// TestMembersWaitOutABrokerSettling: the answers a broker gives while its cluster settles (a
// new broker creating its offsets topic, a new partition with no leader yet, a rebalance as the
// process's own members join) are waited out, for a while; anything else, or the same for too
// long, ends the member as before, for a fresh process.
func TestMembersWaitOutABrokerSettling(t *testing.T) {
	ctx := context.Background()
	m := &member{Consumer: &Consumer{log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	for _, err := range []error{kafkago.RebalanceInProgress, kafkago.NotCoordinatorForGroup, kafkago.GroupCoordinatorNotAvailable,
		kafkago.NotLeaderForPartition, kafkago.LeaderNotAvailable, fmt.Errorf("fetch: %w", kafkago.GroupLoadInProgress)} {
		if !m.stillSettling(ctx, err) {
			t.Errorf("%v: the member ended; want it to wait the broker out", err)
		}
	}
	for _, err := range []error{kafkago.TopicAuthorizationFailed, kafkago.InvalidRequest, errors.New("connection refused")} {
		if m.stillSettling(ctx, err) {
			t.Errorf("%v: waited out; want the member to end", err)
		}
	}
	m.settling = time.Now().Add(-settlePatience - time.Second)
	if m.stillSettling(ctx, kafkago.RebalanceInProgress) {
		t.Errorf("still waiting after %s of a broker that never settles; want the member to end", settlePatience)
	}
}
