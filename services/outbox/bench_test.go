package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/outbox"
)

// BenchmarkRelay: the relay's own cost per message — read a batch from the outbox table in
// order, hand it to the publisher (here one that only counts, so the broker is not measured),
// delete it — for bursts of 100 messages queued together, as a busy service queues them.
//
//	go test -run '^$' -bench Relay -benchtime 50x ./services/outbox
func BenchmarkRelay(b *testing.B) {
	conn := dbtest.NewMigrated(b, nil)
	pub := &flakyPublisher{}
	relay := outbox.NewRelay(conn, table, pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = relay.Run(ctx) }()
	defer func() { cancel(); <-done }()
	const burst = 100
	keys := make([]string, burst)
	for i := range keys {
		keys[i] = fmt.Sprintf("show-%02d", i%20)
	}
	sent := 0
	var relayed time.Duration
	for b.Loop() {
		b.StopTimer()
		queue(b, conn, keys...)
		b.StartTimer()
		start := time.Now()
		relay.Notify()
		sent += burst
		for len(pub.published()) < sent {
			time.Sleep(100 * time.Microsecond)
		}
		relayed += time.Since(start)
	}
	b.ReportMetric(float64(relayed.Microseconds())/float64(sent), "µs/message")
}
