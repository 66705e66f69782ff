package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/event"
)

// Message is one event ready to publish: the topic, the partition key and the envelope.
type Message struct {
	Topic    string
	Key      string
	Envelope event.Envelope
}

// Publisher writes events to Kafka. It is the only writer in Boxoffice, so every message gets
// the same headers and the same delivery settings.
//
// It has two kafka-go writers, alike but for their batch size: kafka-go allocates each batch's
// room for BatchSize messages up front (76 KB at 500), and nearly every call carries a few
// messages, a relay's drain at ordinary rates. Small calls go to the small writer, large ones
// (a drain after an outage) to the large one; either way a call's messages for one partition go
// in one produce request (see PublishBatch). A call returns once its messages are
// acknowledged, so a caller's calls stay in order whichever writer each took.
type Publisher struct {
	small, large *kafkago.Writer
	cluster      Cluster
}

// smallPublish is the most messages a call takes through the small writer.
const smallPublish = 32

// NewPublisher returns a publisher tuned for latency: kafka-go's default 1 s batch delay would
// add a second to every hop. Hash balancing keeps one key on one partition, which is what keeps
// one show's (or one booking's) events in order.
//
// Batching is the callers' (a relay publishes what it took from its outbox in one call), so the
// writer waits for nothing more: a call's messages for one partition join one batch while the
// writer holds that partition's lock, and the batch goes out as soon as the call lets go of it.
// The 1 ms that STACK.md measured as the fast setting held every event of every hop for that
// millisecond (README "Performance" has the figures).
func NewPublisher(cluster Cluster, log *slog.Logger) *Publisher {
	writer := func(batchSize int) *kafkago.Writer {
		return &kafkago.Writer{
			Addr:                   kafkago.TCP(cluster.Brokers...),
			Balancer:               &kafkago.Hash{},
			BatchTimeout:           time.Nanosecond,
			BatchSize:              batchSize,
			RequiredAcks:           kafkago.RequireAll,
			AllowAutoTopicCreation: false,
			WriteTimeout:           10 * time.Second,
			ErrorLogger:            errorLogger(log, "kafka-writer"),
		}
	}
	return &Publisher{cluster: cluster, small: writer(smallPublish), large: writer(PublishBatch)}
}

// writerFor is the writer for a call of n messages. A call of up to smallPublish messages goes
// in one request per partition only while no other call is filling the same partition's batch
// in the same writer: true of the relays (one per outbox, each with a topic of its own, its
// drains one at a time), which is what keeps a key's events in order. Two callers publishing
// to one topic at once could see their calls' messages split over requests.
func (p *Publisher) writerFor(n int) *kafkago.Writer {
	if n <= smallPublish {
		return p.small
	}
	return p.large
}

// PublishBatch is the most messages a Publish call should carry (a relay's drain takes no more):
// a call's messages for one partition then go in one produce request. They must, since a failed
// request among several would be republished after the later ones had landed, reordering a key's
// events; one request that fails is only repeated.
const PublishBatch = 500

// Publish writes the messages and returns once the broker has acknowledged all of them.
func (p *Publisher) Publish(ctx context.Context, msgs ...Message) error {
	out := make([]kafkago.Message, 0, len(msgs))
	sentAt := []byte(strconv.FormatInt(time.Now().UnixNano(), 10))
	for _, m := range msgs {
		env := m.Envelope
		if env.Traceparent == "" {
			env.Traceparent = NextSpan(TraceFrom(ctx))
		}
		value, err := json.Marshal(env)
		if err != nil {
			return fmt.Errorf("encode %s event: %w", env.Type, err)
		}
		out = append(out, kafkago.Message{
			Topic: p.cluster.Topic(m.Topic),
			Key:   []byte(m.Key),
			Value: value,
			Headers: []kafkago.Header{
				{Key: event.HeaderType, Value: []byte(env.Type)},
				{Key: event.HeaderTraceparent, Value: []byte(env.Traceparent)},
				{Key: event.HeaderSentAt, Value: sentAt},
			},
		})
	}
	if err := p.writerFor(len(out)).WriteMessages(ctx, out...); err != nil {
		return fmt.Errorf("publish %d event(s) to %s: %w", len(out), out[0].Topic, err)
	}
	return nil
}

// publishRaw forwards an already-encoded message to a topic named as the cluster names it, used
// for dead letters.
func (p *Publisher) publishRaw(ctx context.Context, msg kafkago.Message) error {
	// Sent now, not when the message was first published: its next consumer's wait starts here.
	sentAt := []byte(strconv.FormatInt(time.Now().UnixNano(), 10))
	headers := make([]kafkago.Header, 0, len(msg.Headers)+1)
	for _, h := range msg.Headers {
		if h.Key != event.HeaderSentAt {
			headers = append(headers, h)
		}
	}
	msg.Headers = append(headers, kafkago.Header{Key: event.HeaderSentAt, Value: sentAt})
	return p.small.WriteMessages(ctx, msg)
}

// Close flushes and closes the writer.
func (p *Publisher) Close() error { return errors.Join(p.small.Close(), p.large.Close()) }

type traceKey struct{}

// WithTrace returns a context carrying a W3C traceparent, so what a handler publishes continues
// the trace of what it consumed.
func WithTrace(ctx context.Context, traceparent string) context.Context {
	return context.WithValue(ctx, traceKey{}, traceparent)
}

// TraceFrom returns the traceparent carried by ctx, or "".
func TraceFrom(ctx context.Context) string {
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}

// NextSpan returns a traceparent for a new span: the same trace id as parent (a new one when
// parent is empty or invalid) and a fresh span id.
func NextSpan(parent string) string {
	traceID := ""
	if parts := strings.Split(parent, "-"); len(parts) == 4 && len(parts[1]) == 32 {
		traceID = parts[1]
	} else {
		traceID = randomHex(16)
	}
	return "00-" + traceID + "-" + randomHex(8) + "-01"
}

// TraceID extracts the trace id from a traceparent, for logs.
func TraceID(traceparent string) string {
	if parts := strings.Split(traceparent, "-"); len(parts) == 4 {
		return parts[1]
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
