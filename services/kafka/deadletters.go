package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/event"
)

// DeadLetter is one parked message, with why and where from.
type DeadLetter struct {
	Topic           string // the dead-letter topic
	Partition       int
	Offset          int64
	SourceTopic     string
	SourcePartition string
	SourceOffset    string
	Group           string // the consumer group that gave up on it
	Error           string
	Attempts        string
	Type            string
	BookingID       string
	Time            time.Time
}

// ListDeadLetters reads every message on the dead-letter topics of topics, oldest first per
// partition, without joining any consumer group.
func ListDeadLetters(ctx context.Context, cluster Cluster, topics []string) ([]DeadLetter, error) {
	brokers := cluster.Brokers
	var out []DeadLetter
	for _, topic := range topics {
		dlt := cluster.Topic(DeadLetterTopic(topic))
		partitions, err := partitionsOf(ctx, brokers, dlt)
		if err != nil {
			return nil, err
		}
		for _, p := range partitions {
			msgs, err := readPartition(ctx, brokers, dlt, p)
			if err != nil {
				return nil, err
			}
			for _, m := range msgs {
				out = append(out, deadLetterOf(cluster, m))
			}
		}
	}
	return out, nil
}

// RedriveGroup remembers, per dead-letter partition, how far re-driving has got, so each dead
// letter is sent back once however often the command runs.
const RedriveGroup = "boxoffice-deadletter-redrive"

// HeaderRedriveFor names the one consumer group a re-driven message is for: the others read
// past it, having handled (or parked) it already.
const HeaderRedriveFor = "redrive-for"

// Redrive sends every dead letter not re-driven before back to its source topic (same key,
// value and headers, without the dlt- ones) for the group that gave up on it to try again,
// after a fix. It returns how many were sent.
func Redrive(ctx context.Context, cluster Cluster, pub *Publisher, topics []string) (int, error) {
	brokers, redriveGroup := cluster.Brokers, cluster.Group(RedriveGroup)
	sent := 0
	for _, topic := range topics {
		dlt := cluster.Topic(DeadLetterTopic(topic))
		partitions, err := partitionsOf(ctx, brokers, dlt)
		if err != nil {
			return sent, err
		}
		committed, err := committedOffsets(ctx, brokers, redriveGroup, dlt, partitions)
		if err != nil {
			return sent, err
		}
		for _, p := range partitions {
			msgs, err := readPartitionFrom(ctx, brokers, dlt, p, committed[p])
			if err != nil {
				return sent, err
			}
			if len(msgs) == 0 {
				continue
			}
			for _, m := range msgs {
				dl := deadLetterOf(cluster, m)
				var headers []kafkago.Header
				for _, h := range m.Headers {
					if !strings.HasPrefix(h.Key, "dlt-") {
						headers = append(headers, h)
					}
				}
				headers = append(headers,
					kafkago.Header{Key: "redriven-from", Value: []byte(fmt.Sprintf("%s/%d@%d", dlt, p, m.Offset))},
					kafkago.Header{Key: HeaderRedriveFor, Value: []byte(dl.Group)})
				if err := pub.publishRaw(ctx, kafkago.Message{Topic: cluster.Topic(dl.SourceTopic), Key: m.Key, Value: m.Value, Headers: headers}); err != nil {
					return sent, fmt.Errorf("re-drive %s/%d@%d to %s: %w", dlt, p, m.Offset, dl.SourceTopic, err)
				}
				// Recorded one by one: a run that fails half-way does not send the first half again.
				if err := commitOffset(ctx, brokers, redriveGroup, dlt, p, m.Offset+1); err != nil {
					return sent, err
				}
				sent++
			}
		}
	}
	return sent, nil
}

func deadLetterOf(cluster Cluster, m kafkago.Message) DeadLetter {
	dl := DeadLetter{
		Topic: cluster.Unqualified(m.Topic), Partition: m.Partition, Offset: m.Offset, Time: m.Time,
		SourceTopic:     headerValue(m.Headers, "dlt-source-topic"),
		SourcePartition: headerValue(m.Headers, "dlt-source-partition"),
		SourceOffset:    headerValue(m.Headers, "dlt-source-offset"),
		Group:           headerValue(m.Headers, "dlt-group"),
		Error:           headerValue(m.Headers, "dlt-error"),
		Attempts:        headerValue(m.Headers, "dlt-attempts"),
		Type:            headerValue(m.Headers, event.HeaderType),
	}
	if dl.SourceTopic == "" {
		dl.SourceTopic = strings.TrimSuffix(dl.Topic, ".dlt")
	}
	if env, err := event.Decode(m.Value); err == nil {
		dl.BookingID = env.BookingID
		if dl.Type == "" {
			dl.Type = env.Type
		}
	}
	return dl
}

func partitionsOf(ctx context.Context, brokers []string, topic string) ([]int, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	for _, t := range meta.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		var out []int
		for _, p := range t.Partitions {
			out = append(out, p.ID)
		}
		return out, nil
	}
	return nil, fmt.Errorf("topic %s not found", topic)
}

func readPartition(ctx context.Context, brokers []string, topic string, partition int) ([]kafkago.Message, error) {
	return readPartitionFrom(ctx, brokers, topic, partition, 0)
}

// readPartitionFrom reads a partition from offset to its current end.
func readPartitionFrom(ctx context.Context, brokers []string, topic string, partition int, from int64) ([]kafkago.Message, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	firsts, ends, err := partitionBounds(ctx, client, topic, []int{partition})
	if err != nil {
		return nil, err
	}
	first, end := firsts[partition], ends[partition]
	from = max(from, first)
	if from >= end {
		return nil, nil
	}
	reader := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: brokers, Topic: topic, Partition: partition, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 500 * time.Millisecond,
	})
	defer reader.Close()
	if err := reader.SetOffset(from); err != nil {
		return nil, fmt.Errorf("seek %s/%d: %w", topic, partition, err)
	}
	var out []kafkago.Message
	for next := from; next < end; {
		readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := reader.ReadMessage(readCtx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read %s/%d@%d: %w", topic, partition, next, err)
		}
		out = append(out, m)
		next = m.Offset + 1
	}
	return out, nil
}

func committedOffsets(ctx context.Context, brokers []string, group, topic string, partitions []int) (map[int]int64, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: partitions}})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s on %s: %w", group, topic, err)
	}
	if errors.Is(resp.Error, kafkago.GroupIdNotFound) {
		return map[int]int64{}, nil // never re-driven anything
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("committed offsets of %s on %s: %w", group, topic, resp.Error)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil && !errors.Is(p.Error, kafkago.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("committed offset of %s on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		if p.CommittedOffset > 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

func commitOffset(ctx context.Context, brokers []string, group, topic string, partition int, offset int64) error {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{
		GroupID: group, GenerationID: -1,
		Topics: map[string][]kafkago.OffsetCommit{topic: {{Partition: partition, Offset: offset}}},
	})
	if err != nil {
		return fmt.Errorf("record re-drive of %s/%d: %w", topic, partition, err)
	}
	for _, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return fmt.Errorf("record re-drive of %s/%d: %w", topic, partition, p.Error)
			}
		}
	}
	return nil
}

// FormatDeadLetter is one line of `boxoffice -target=deadletters list`.
func FormatDeadLetter(d DeadLetter) string {
	return strings.Join([]string{
		d.Time.UTC().Format(time.RFC3339),
		d.Topic + "/" + strconv.Itoa(d.Partition) + "@" + strconv.FormatInt(d.Offset, 10),
		"from " + d.SourceTopic + "/" + d.SourcePartition + "@" + d.SourceOffset,
		"group " + d.Group,
		"type " + orDash(d.Type),
		"booking " + orDash(d.BookingID),
		"attempts " + orDash(d.Attempts),
		"error: " + d.Error,
	}, "  ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
