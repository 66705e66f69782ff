package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
)

// TargetDeadLetters lists the dead-letter topics or re-drives them: a tool, not a service.
const TargetDeadLetters = "deadletters"

// runDeadLetters is `boxoffice -target=deadletters list|redrive`. With KAFKA_BROKERS empty it
// talks to the embedded broker of a running `make run` (found through KAFKA_DATA_DIR).
func runDeadLetters(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "list" && args[0] != "redrive") {
		return fmt.Errorf("-target=%s: want one command, list or redrive", TargetDeadLetters)
	}
	cluster := cfg.KafkaCluster()
	if len(cluster.Brokers) == 0 {
		running, ok := kafka.RunningEmbedded(cfg.KafkaDataDir)
		if !ok {
			return fmt.Errorf("no broker: set KAFKA_BROKERS, or start Boxoffice (make run) so its embedded broker in KAFKA_DATA_DIR=%s is running", cfg.KafkaDataDir)
		}
		cluster.Brokers = running
	}
	switch args[0] {
	case "list":
		letters, err := kafka.ListDeadLetters(ctx, cluster, event.Topics)
		if err != nil {
			return err
		}
		for _, d := range letters {
			fmt.Fprintln(stdout, kafka.FormatDeadLetter(d))
		}
		fmt.Fprintf(stdout, "%d dead letter(s)\n", len(letters))
	case "redrive":
		pub := kafka.NewPublisher(cluster, slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer pub.Close()
		n, err := kafka.Redrive(ctx, cluster, pub, event.Topics)
		if err != nil {
			return fmt.Errorf("re-drove %d before: %w", n, err)
		}
		fmt.Fprintf(stdout, "re-drove %d dead letter(s) to their topics\n", n)
	}
	return nil
}
