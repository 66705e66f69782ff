package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db"
	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/notification"
	"github.com/boxoffice/boxoffice/services/ops"
	"github.com/boxoffice/boxoffice/services/payment"
	"github.com/boxoffice/boxoffice/services/ticket"
	"github.com/boxoffice/boxoffice/web"
)

// TargetDeadLetters lists the dead-letter topics or re-drives them: a tool, not a service.
const TargetDeadLetters = "deadletters"

// runDeadLetters is `boxoffice -target=deadletters list|redrive`. With KAFKA_BROKERS empty it
// talks to the embedded broker of a running `make run` (found through KAFKA_DATA_DIR).
func runDeadLetters(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "list" && args[0] != "redrive") {
		return fmt.Errorf("-target=%s: want one command, list or redrive", TargetDeadLetters)
	}
	cluster, err := toolCluster(cfg)
	if err != nil {
		return err
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

// toolCluster is the Kafka a tool talks to: KAFKA_BROKERS, or the embedded broker of a running
// `make run` (found through KAFKA_DATA_DIR).
func toolCluster(cfg Config) (kafka.Cluster, error) {
	cluster := cfg.KafkaCluster()
	if len(cluster.Brokers) == 0 {
		running, ok := kafka.RunningEmbedded(cfg.KafkaDataDir)
		if !ok {
			return cluster, fmt.Errorf("no broker: set KAFKA_BROKERS, or start Boxoffice (make run) so its embedded broker in KAFKA_DATA_DIR=%s is running", cfg.KafkaDataDir)
		}
		cluster.Brokers = running
	}
	return cluster, nil
}

// outboxTables are every service's outbox.
var outboxTables = []string{web.OutboxTable, booking.OutboxTable, payment.OutboxTable, notification.OutboxTable, ticket.OutboxTable}

// opsSource is what /ops and /metrics read: every topic, group and outbox of the system.
func opsSource(cfg Config, conn *sqlx.DB, cluster kafka.Cluster) ops.Source {
	return ops.Source{DB: conn, Cluster: cluster, Topics: event.Topics, Subscriptions: subscriptions(cfg.WebInstance), Outboxes: outboxTables}
}

// TargetReplay shows and moves consumer groups' offsets, and rebuilds the web's projection: a
// tool, not a service.
const TargetReplay = "replay"

// subscriptions lists every consumer group Boxoffice runs and what it reads.
func subscriptions(webInstance string) []kafka.Subscription {
	subs := []kafka.Subscription{booking.Subscription, payment.Subscription}
	subs = append(subs, notification.Subscriptions...)
	subs = append(subs, ticket.Subscription)
	return append(subs, web.ProjectionSubscriptions(webInstance)...)
}

const replayUsage = `replay commands:
  offsets                          every group's committed offset, end offset and lag per partition
  rewind GROUP earliest|latest|OFFSET|TIME
                                   move a stopped group (TIME in RFC 3339, like 2026-11-25T18:00:00Z)
  rebuild-web                      empty the web's booking-status table (WEB_INSTANCE's) and rewind
                                   its groups, so the stopped web rebuilds it from the topics`

// runReplay is `boxoffice -target=replay offsets|rewind|rebuild-web`.
func runReplay(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(replayUsage)
	}
	cluster, err := toolCluster(cfg)
	if err != nil {
		return err
	}
	subs := subscriptions(cfg.WebInstance)
	switch {
	case args[0] == "offsets" && len(args) == 1:
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tMEMBERS\tTOPIC\tPARTITION\tCOMMITTED\tEND\tLAG")
		for _, sub := range subs {
			members, err := kafka.GroupMembers(ctx, cluster, sub.Group)
			if err != nil {
				return err
			}
			offsets, err := kafka.GroupOffsets(ctx, cluster, sub)
			if err != nil {
				return err
			}
			for _, o := range offsets {
				committed := fmt.Sprint(o.Committed)
				if o.Committed < 0 {
					committed = "-"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%d\n", o.Group, members, o.Topic, o.Partition, committed, o.End, o.Lag)
			}
		}
		return tw.Flush()
	case args[0] == "rewind" && len(args) == 3:
		var sub *kafka.Subscription
		for i := range subs {
			if subs[i].Group == args[1] {
				sub = &subs[i]
			}
		}
		if sub == nil {
			var names []string
			for _, s := range subs {
				names = append(names, s.Group)
			}
			return fmt.Errorf("rewind: no group %q; the groups are %s", args[1], strings.Join(names, ", "))
		}
		to, err := parseRewindTarget(args[2])
		if err != nil {
			return err
		}
		moved, err := kafka.RewindGroup(ctx, cluster, *sub, to)
		if err != nil {
			return err
		}
		for _, o := range moved {
			fmt.Fprintf(stdout, "%s: %s/%d now at %d (end %d, %d to read)\n", o.Group, o.Topic, o.Partition, o.Committed, o.End, o.Lag)
		}
		return nil
	case args[0] == "rebuild-web" && len(args) == 1:
		return rebuildWeb(ctx, cfg, cluster, stdout)
	}
	return errors.New(replayUsage)
}

func parseRewindTarget(s string) (kafka.RewindTarget, error) {
	switch s {
	case "earliest":
		return kafka.RewindTarget{Earliest: true}, nil
	case "latest":
		return kafka.RewindTarget{Latest: true}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return kafka.RewindTarget{Offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return kafka.RewindTarget{At: t}, nil
	}
	return kafka.RewindTarget{}, fmt.Errorf("rewind to %q: want earliest, latest, an offset or an RFC 3339 time", s)
}

// rebuildWeb empties the web's projection and rewinds its groups to the start, so the next web
// process rebuilds every booking's status and stages from the five topics. The web must be
// stopped: a running replica would keep its own offsets.
func rebuildWeb(ctx context.Context, cfg Config, cluster kafka.Cluster, stdout io.Writer) error {
	subs := web.ProjectionSubscriptions(cfg.WebInstance)
	// Every web replica shares the table: all of them must be stopped, not only this one.
	webStopped := func() error {
		groups, err := kafka.Groups(ctx, cluster)
		if err != nil {
			return err
		}
		for _, g := range groups {
			if !strings.HasPrefix(g, "web-") {
				continue
			}
			if n, err := kafka.GroupMembers(ctx, cluster, g); err != nil {
				return err
			} else if n > 0 {
				return fmt.Errorf("rebuild-web: %s has %d member(s): stop every web replica first", g, n)
			}
		}
		return nil
	}
	if err := webStopped(); err != nil {
		return err
	}
	// Only a complete history rebuilds the table: past retention, bookings would vanish.
	if err := kafka.CheckHistory(ctx, cluster, event.Topics); err != nil {
		return fmt.Errorf("rebuild-web: %w; keep the table (or raise retention before the next time)", err)
	}
	// Rewind first: on its own it changes nothing (a replay is idempotent), so a failure half-way
	// leaves the table as it was.
	for _, sub := range subs {
		if _, err := kafka.RewindGroup(ctx, cluster, sub, kafka.RewindTarget{Earliest: true}); err != nil {
			return err
		}
	}
	conn, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := web.ResetProjection(ctx, conn); err != nil {
		return err
	}
	if err := webStopped(); err != nil {
		// A web started while we worked may have lost rows it had just rebuilt: say so loudly.
		return fmt.Errorf("%w — a web replica started during the rebuild: stop it and run rebuild-web again", err)
	}
	fmt.Fprintf(stdout, "web projection emptied and groups %s and %s rewound: start the web to rebuild it\n", subs[0].Group, subs[1].Group)
	return nil
}

// TargetHealth checks a /healthz or /readyz URL: the container health check of an image with
// no shell or curl.
const TargetHealth = "health"

func runHealth(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%s: want one URL, like http://127.0.0.1:8080/readyz", TargetHealth)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%d %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d", args[0], resp.StatusCode)
	}
	return nil
}

// TargetDoorKey prints the key door staff sign in with (DOOR_KEY when set, else the one the web
// made and keeps in web.secrets): for whoever runs the cinema to hand to the door.
const TargetDoorKey = "door-key"

func runDoorKey(ctx context.Context, cfg Config, stdout io.Writer) error {
	if cfg.DoorKey != "" {
		fmt.Fprintln(stdout, cfg.DoorKey)
		return nil
	}
	conn, err := db.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := db.Migrate(ctx, conn, nil); err != nil {
		return err
	}
	key, _, err := web.DoorKey(ctx, conn, "")
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, key)
	return nil
}
