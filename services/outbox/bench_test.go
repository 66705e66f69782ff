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

// BenchmarkRelay: the relay's own cost per message, from being told of committed messages to
// the publisher having them (here one that only counts, so the broker is not measured), their
// rows deleted just after. The drain reads them from the outbox table in order first; the fast
// lane is handed them with their ids (Committed). Bursts of 100 messages queued together, as a
// busy service queues them, and lone messages, as a quiet one does.
//
//	go test -run '^$' -bench Relay -benchtime 200x ./services/outbox
func BenchmarkRelay(b *testing.B) {
	for _, lane := range []string{"drain", "fast"} {
		for _, burst := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/burst=%d", lane, burst), func(b *testing.B) { benchmarkRelay(b, lane == "fast", burst) })
		}
	}
}

func benchmarkRelay(b *testing.B, fast bool, burst int) {
	conn := dbtest.NewMigrated(b, nil)
	pub := &flakyPublisher{}
	relay := outbox.NewRelay(conn, table, pub, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = relay.Run(ctx) }()
	defer func() { cancel(); <-done }()
	keys := make([]string, burst)
	for i := range keys {
		keys[i] = fmt.Sprintf("show-%02d", i%20)
	}
	time.Sleep(50 * time.Millisecond) // the start-up drain, which opens the fast lane
	sent := 0
	var relayed time.Duration
	for b.Loop() {
		b.StopTimer()
		ids, msgs, err := insertQueued(conn, keys...)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if fast {
			relay.Committed(ids, msgs)
		} else {
			relay.Notify()
		}
		sent += burst
		for len(pub.published()) < sent {
			time.Sleep(20 * time.Microsecond)
		}
		relayed += time.Since(start)
	}
	b.ReportMetric(float64(relayed.Microseconds())/float64(sent), "µs/message")
}
