package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Subscription is one consumer group and the topics it reads, as the contract names them.
type Subscription struct {
	Group  string
	Topics []string
}

// PartitionOffset is where a consumer group stands on one partition: Committed is the next
// offset it will read (-1 if it never committed there), End the partition's end, Lag what is
// left to read.
type PartitionOffset struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Committed int64  `json:"committed"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
}

// GroupOffsets reports, partition by partition, how far a group has read its topics. kafka-go's
// Reader.Stats().Lag is always 0 for group readers, so lag comes from the broker's answers: the
// group's committed offsets and the partitions' end offsets. A partition the group never
// committed on counts as unread from its first offset.
func GroupOffsets(ctx context.Context, cluster Cluster, sub Subscription) ([]PartitionOffset, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(cluster.Brokers...), Timeout: 10 * time.Second}
	var out []PartitionOffset
	for _, topic := range sub.Topics {
		name := cluster.Topic(topic)
		partitions, err := partitionsOf(ctx, cluster.Brokers, name)
		if err != nil {
			return nil, err
		}
		committed, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: cluster.Group(sub.Group), Topics: map[string][]int{name: partitions}})
		if err == nil && committed.Error != nil {
			err = committed.Error // the coordinator moving, say: no offsets rather than wrong ones
		}
		if err != nil {
			return nil, fmt.Errorf("committed offsets of %s: %w", sub.Group, err)
		}
		first, last, err := partitionBounds(ctx, client, name, partitions)
		if err != nil {
			return nil, err
		}
		byPartition := map[int]int64{}
		for _, p := range committed.Topics[name] {
			if p.Error != nil && !errors.Is(p.Error, kafkago.UnknownTopicOrPartition) {
				return nil, fmt.Errorf("committed offset of %s on %s/%d: %w", sub.Group, topic, p.Partition, p.Error)
			}
			byPartition[p.Partition] = p.CommittedOffset
		}
		for _, p := range partitions {
			c, ok := byPartition[p]
			if !ok {
				c = -1
			}
			from := c
			if from < 0 {
				from = first[p]
			}
			out = append(out, PartitionOffset{Group: sub.Group, Topic: topic, Partition: p, Committed: c, End: last[p], Lag: max(last[p]-from, 0)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out, nil
}

// GroupMembers returns how many members the group has now.
func GroupMembers(ctx context.Context, cluster Cluster, group string) (int, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(cluster.Brokers...), Timeout: 10 * time.Second}
	resp, err := client.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{GroupIDs: []string{cluster.Group(group)}})
	if err != nil {
		return 0, fmt.Errorf("describe group %s: %w", group, err)
	}
	for _, g := range resp.Groups {
		if g.Error != nil {
			return 0, fmt.Errorf("describe group %s: %w", group, g.Error)
		}
		return len(g.Members), nil
	}
	return 0, nil
}

// RewindTarget says where to move a group: to the start of each partition, to its end, to an
// offset, or to the first message at or after a time.
type RewindTarget struct {
	Earliest bool
	Latest   bool
	Offset   int64     // used when neither Earliest, Latest nor At is set
	At       time.Time // non-zero: by time
}

// ErrGroupActive refuses to move a group that has members: they would overwrite the new offsets
// with their own at their next commit.
var ErrGroupActive = errors.New("the group has members: stop its processes first")

// RewindGroup moves a stopped group's committed offsets on every partition of its topics, so its
// next member reads from there: everything again (Earliest), from a moment (At), or nothing
// older than now (Latest). Offsets are clamped to what the partitions hold.
func RewindGroup(ctx context.Context, cluster Cluster, sub Subscription, to RewindTarget) ([]PartitionOffset, error) {
	members, err := GroupMembers(ctx, cluster, sub.Group)
	if err != nil {
		return nil, err
	}
	if members > 0 {
		return nil, fmt.Errorf("rewind %s (%d members): %w", sub.Group, members, ErrGroupActive)
	}
	client := &kafkago.Client{Addr: kafkago.TCP(cluster.Brokers...), Timeout: 10 * time.Second}
	req := &kafkago.OffsetCommitRequest{GroupID: cluster.Group(sub.Group), GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{}}
	var moved []PartitionOffset
	for _, topic := range sub.Topics {
		name := cluster.Topic(topic)
		partitions, err := partitionsOf(ctx, cluster.Brokers, name)
		if err != nil {
			return nil, err
		}
		first, last, err := partitionBounds(ctx, client, name, partitions)
		if err != nil {
			return nil, err
		}
		var atTime map[int]int64
		if !to.At.IsZero() {
			if atTime, err = offsetsAt(ctx, client, name, partitions, to.At); err != nil {
				return nil, err
			}
		}
		for _, p := range partitions {
			offset := to.Offset
			switch {
			case to.Earliest:
				offset = first[p]
			case to.Latest:
				offset = last[p]
			case !to.At.IsZero():
				offset = atTime[p]
				if offset < 0 { // nothing at or after that moment
					offset = last[p]
				}
			}
			offset = min(max(offset, first[p]), last[p])
			req.Topics[name] = append(req.Topics[name], kafkago.OffsetCommit{Partition: p, Offset: offset})
			moved = append(moved, PartitionOffset{Group: sub.Group, Topic: topic, Partition: p, Committed: offset, End: last[p], Lag: last[p] - offset})
		}
	}
	resp, err := client.OffsetCommit(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("rewind %s: %w", sub.Group, err)
	}
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("rewind %s on %s/%d: %w", sub.Group, cluster.Unqualified(topic), p.Partition, p.Error)
			}
		}
	}
	return moved, nil
}

// partitionBounds returns each partition's first and end offsets.
func partitionBounds(ctx context.Context, client *kafkago.Client, topic string, partitions []int) (first, last map[int]int64, err error) {
	ask := func(of func(int) kafkago.OffsetRequest) (map[int]int64, error) {
		req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
		for _, p := range partitions {
			req.Topics[topic] = append(req.Topics[topic], of(p))
		}
		// A topic created a moment ago may have no partition leader yet (Apache Kafka elects
		// one within a second or so): ask again for a few seconds before giving up.
		for attempt := 0; ; attempt++ {
			resp, err := client.ListOffsets(ctx, req)
			if err != nil {
				return nil, fmt.Errorf("offsets of %s: %w", topic, err)
			}
			out := map[int]int64{}
			for _, p := range resp.Topics[topic] {
				if p.Error != nil {
					err = fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, p.Error)
				}
				out[p.Partition] = max(p.FirstOffset, p.LastOffset)
			}
			var kerr kafkago.Error
			if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() || attempt >= 50 {
				return out, err
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if first, err = ask(kafkago.FirstOffsetOf); err != nil {
		return nil, nil, err
	}
	last, err = ask(kafkago.LastOffsetOf)
	return first, last, err
}

// offsetsAt returns, per partition, the first offset whose message is at or after t (-1: none).
func offsetsAt(ctx context.Context, client *kafkago.Client, topic string, partitions []int, t time.Time) (map[int]int64, error) {
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
	for _, p := range partitions {
		req.Topics[topic] = append(req.Topics[topic], kafkago.TimeOffsetOf(p, t))
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("offsets of %s at %s: %w", topic, t.Format(time.RFC3339), err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d at %s: %w", topic, p.Partition, t.Format(time.RFC3339), p.Error)
		}
		out[p.Partition] = -1
		for offset := range p.Offsets {
			out[p.Partition] = offset
		}
	}
	return out, nil
}

// TopicOffsets is a topic's partitions and how many messages each has received so far (its end
// offset; with unlimited retention, its length).
type TopicOffsets struct {
	Topic string  `json:"topic"` // as the contract names it
	Ends  []int64 `json:"end_offsets"`
	Total int64   `json:"messages"`
}

// EndOffsets reads a topic's end offsets.
func EndOffsets(ctx context.Context, cluster Cluster, topic string) (TopicOffsets, error) {
	name := cluster.Topic(topic)
	partitions, err := partitionsOf(ctx, cluster.Brokers, name)
	if err != nil {
		return TopicOffsets{}, err
	}
	client := &kafkago.Client{Addr: kafkago.TCP(cluster.Brokers...), Timeout: 10 * time.Second}
	_, last, err := partitionBounds(ctx, client, name, partitions)
	if err != nil {
		return TopicOffsets{}, err
	}
	out := TopicOffsets{Topic: topic, Ends: make([]int64, len(partitions))}
	for p, end := range last {
		if p < len(out.Ends) {
			out.Ends[p] = end
		}
		out.Total += end
	}
	return out, nil
}

// Groups lists the consumer groups on the cluster, in its namespace, by their contract names.
func Groups(ctx context.Context, cluster Cluster) ([]string, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(cluster.Brokers...), Timeout: 10 * time.Second}
	resp, err := client.ListGroups(ctx, &kafkago.ListGroupsRequest{})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	var out []string
	for _, g := range resp.Groups {
		if cluster.Namespace != "" && !strings.HasPrefix(g.GroupID, cluster.Namespace+".") {
			continue
		}
		out = append(out, cluster.Unqualified(g.GroupID))
	}
	sort.Strings(out)
	return out, nil
}

// ErrHistoryLost says a topic no longer holds its oldest messages (retention deleted them), so
// reading it from the start cannot rebuild everything that happened.
var ErrHistoryLost = errors.New("the topic's oldest messages are gone (retention)")

// CheckHistory makes sure every partition of the topics still starts at offset 0.
func CheckHistory(ctx context.Context, cluster Cluster, topics []string) error {
	client := &kafkago.Client{Addr: kafkago.TCP(cluster.Brokers...), Timeout: 10 * time.Second}
	for _, topic := range topics {
		name := cluster.Topic(topic)
		partitions, err := partitionsOf(ctx, cluster.Brokers, name)
		if err != nil {
			return err
		}
		first, _, err := partitionBounds(ctx, client, name, partitions)
		if err != nil {
			return err
		}
		for p, offset := range first {
			if offset > 0 {
				return fmt.Errorf("%s/%d starts at offset %d: %w", topic, p, offset, ErrHistoryLost)
			}
		}
	}
	return nil
}
