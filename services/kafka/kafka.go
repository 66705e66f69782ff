// Package kafka is Boxoffice's Kafka plumbing: the embedded broker, topic creation, the one
// publisher and the one consume loop every service runs. Settings follow ../shared/STACK.md:
// kafka-go's defaults cost a full second per hop.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// EmbeddedBroker is a single-node Kafka-protocol broker running inside this process, so one
// machine needs nothing but the binary. It speaks the real wire protocol: clients cannot tell.
type EmbeddedBroker struct {
	cluster *kfake.Cluster
	lock    *os.File // held while the broker owns its data dir
}

// StartEmbedded starts the in-process broker on 127.0.0.1:port (0 picks a free port). With a
// dataDir its log and committed offsets survive restarts; an empty dataDir keeps it in memory.
func StartEmbedded(port int, dataDir string) (*EmbeddedBroker, error) {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.ClusterID("boxoffice"),
	}
	var lock *os.File
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("create kafka data dir: %w", err)
		}
		// Two brokers writing one data dir would corrupt it (a second `make run`, say).
		var err error
		if lock, err = lockDir(dataDir); err != nil {
			return nil, err
		}
		opts = append(opts, kfake.DataDir(dataDir))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		if lock != nil {
			_ = lock.Close()
		}
		return nil, fmt.Errorf("start embedded kafka broker: %w", err)
	}
	if dataDir != "" {
		// Tools (such as the dead-letter command) find the running broker here.
		_ = os.WriteFile(filepath.Join(dataDir, addrFile), []byte(strings.Join(cluster.ListenAddrs(), ",")), 0o644)
	}
	return &EmbeddedBroker{cluster: cluster, lock: lock}, nil
}

const addrFile = "broker.addr"

// RunningEmbedded returns the addresses of the embedded broker that owns dataDir, if one is
// running now.
func RunningEmbedded(dataDir string) ([]string, bool) {
	if f, err := lockDir(dataDir); err == nil {
		_ = f.Close() // we could take the lock: nobody is running
		return nil, false
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, addrFile))
	if err != nil || len(raw) == 0 {
		return nil, false
	}
	return strings.Split(string(raw), ","), true
}

func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock kafka data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "boxoffice.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock kafka data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("kafka data dir %s is in use by another boxoffice process (is `make run` already running?)", dir)
	}
	return f, nil
}

// Addrs are the broker addresses clients should dial.
func (b *EmbeddedBroker) Addrs() []string { return b.cluster.ListenAddrs() }

// Close stops the broker, flushing its data dir, and releases the dir.
func (b *EmbeddedBroker) Close() {
	b.cluster.Close()
	if b.lock != nil {
		_ = b.lock.Close()
	}
}

// TopicSpec is how topics are created: partitions set how far a consumer group can spread (one
// member per partition at most); replicas how many brokers keep a copy of each.
type TopicSpec struct {
	Partitions        int
	ReplicationFactor int // 0 means 1
}

// EnsureTopics creates each topic with the given partition count, plus its dead-letter topic,
// and leaves topics that already exist alone. Creating them up front matters: kafka-go fails a
// write to a missing topic at once.
func EnsureTopics(ctx context.Context, cluster Cluster, spec TopicSpec, topics ...string) error {
	brokers := cluster.Brokers
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	replicas := max(spec.ReplicationFactor, 1)
	var configs []kafkago.TopicConfig
	for _, t := range topics {
		for _, name := range []string{t, DeadLetterTopic(t)} {
			configs = append(configs, kafkago.TopicConfig{Topic: cluster.Topic(name), NumPartitions: spec.Partitions, ReplicationFactor: replicas})
		}
	}
	var lastErr error
	// A broker that has just started may not answer yet: retry for a few seconds.
	for attempt := 0; attempt < 50; attempt++ {
		resp, err := client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: configs})
		if err == nil {
			for topic, terr := range resp.Errors {
				if terr != nil && !errors.Is(terr, kafkago.TopicAlreadyExists) {
					return fmt.Errorf("create topic %s: %w", topic, terr)
				}
			}
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("create topics on %s: %w", strings.Join(brokers, ","), lastErr)
}

// Ping checks that a broker answers a metadata request.
func Ping(ctx context.Context, cluster Cluster) error {
	brokers := cluster.Brokers
	var d net.Dialer
	var lastErr error
	for _, b := range brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err != nil {
			lastErr = err
			continue
		}
		kc := kafkago.NewConn(conn, "", 0)
		if deadline, ok := ctx.Deadline(); ok {
			_ = kc.SetDeadline(deadline)
		}
		_, err = kc.Brokers()
		_ = kc.Close()
		if err == nil {
			return nil
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = errors.New("no brokers configured")
	}
	return fmt.Errorf("kafka: %w", lastErr)
}

// DeadLetterTopic names the topic where messages that can never be processed are parked.
func DeadLetterTopic(topic string) string { return topic + ".dlt" }

// errorLogger routes kafka-go's error log into slog; its info logger is far too chatty to keep.
func errorLogger(log *slog.Logger, component string) kafkago.LoggerFunc {
	return func(format string, args ...any) {
		log.Warn(fmt.Sprintf(format, args...), "component", component)
	}
}

func headerValue(headers []kafkago.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
