// Package ops reads how the system is doing, from the broker and the databases: every topic's
// partitions and end offsets, every consumer group's members, committed offsets and lag, every
// outbox's backlog and every dead-letter topic's count. The web shows it on /ops and exports it
// on /metrics.
package ops

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/kafka"
)

// Source is where a snapshot is read from.
type Source struct {
	DB            *sqlx.DB
	Cluster       kafka.Cluster
	Topics        []string // the contract's topics; their dead-letter topics are read too
	Subscriptions []kafka.Subscription
	Outboxes      []string // <schema>.outbox tables
}

// Group is one consumer group's state.
type Group struct {
	Name    string                  `json:"group"`
	Members int                     `json:"members"`
	Lag     int64                   `json:"lag"`
	Offsets []kafka.PartitionOffset `json:"partitions"`
}

// Outbox is one service's backlog of events not yet published.
type Outbox struct {
	Table         string        `json:"table"`
	Pending       int           `json:"pending"`
	Oldest        time.Duration `json:"-"`              // age of the oldest pending event; 0 when empty
	OldestSeconds float64       `json:"oldest_seconds"` // the same, for JSON
}

// Snapshot is the state at one moment. A part that could not be read is named in Errors and
// left out, so one unreachable piece never blanks the whole view.
type Snapshot struct {
	At          time.Time            `json:"at"`
	Topics      []kafka.TopicOffsets `json:"topics"`
	DeadLetters []kafka.TopicOffsets `json:"dead_letters"`
	Groups      []Group              `json:"groups"`
	Outboxes    []Outbox             `json:"outboxes"`
	Errors      []string             `json:"errors"`
}

var outboxName = regexp.MustCompile(`^[a-z_]+\.outbox$`)

// Snapshot reads everything, each part with its own short deadline.
func (s Source) Snapshot(ctx context.Context) Snapshot {
	snap := Snapshot{At: time.Now()}
	fail := func(what string, err error) { snap.Errors = append(snap.Errors, fmt.Sprintf("%s: %v", what, err)) }
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 3*time.Second) }

	for _, topic := range s.Topics {
		for _, name := range []string{topic, kafka.DeadLetterTopic(topic)} {
			c, cancel := step()
			offsets, err := kafka.EndOffsets(c, s.Cluster, name)
			cancel()
			switch {
			case err != nil:
				fail("topic "+name, err)
			case name == topic:
				snap.Topics = append(snap.Topics, offsets)
			default:
				snap.DeadLetters = append(snap.DeadLetters, offsets)
			}
		}
	}
	for _, sub := range s.Subscriptions {
		c, cancel := step()
		members, err := kafka.GroupMembers(c, s.Cluster, sub.Group)
		var offsets []kafka.PartitionOffset
		if err == nil {
			offsets, err = kafka.GroupOffsets(c, s.Cluster, sub)
		}
		cancel()
		if err != nil {
			fail("group "+sub.Group, err)
			continue
		}
		g := Group{Name: sub.Group, Members: members, Offsets: offsets}
		for _, o := range offsets {
			g.Lag += o.Lag
		}
		snap.Groups = append(snap.Groups, g)
	}
	for _, table := range s.Outboxes {
		if !outboxName.MatchString(table) {
			fail("outbox "+table, fmt.Errorf("not a <schema>.outbox table"))
			continue
		}
		c, cancel := step()
		var row struct {
			Pending int        `db:"pending"`
			Oldest  *time.Time `db:"oldest"`
		}
		err := s.DB.GetContext(c, &row, `SELECT count(*) AS pending, min(created_at) AS oldest FROM `+table)
		cancel()
		if err != nil {
			fail("outbox "+table, err)
			continue
		}
		o := Outbox{Table: table, Pending: row.Pending}
		if row.Oldest != nil {
			o.Oldest = max(snap.At.Sub(*row.Oldest), 0)
			o.OldestSeconds = o.Oldest.Seconds()
		}
		snap.Outboxes = append(snap.Outboxes, o)
	}
	return snap
}
