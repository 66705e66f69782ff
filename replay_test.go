package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/notification"
	"github.com/boxoffice/boxoffice/services/payment"
	"github.com/boxoffice/boxoffice/services/ticket"
	"github.com/boxoffice/boxoffice/web"
)

// rewindGroup sets a stopped consumer group back to the start of every partition of topics, so
// its next member reads everything again.
func rewindGroup(t *testing.T, kc kafka.Cluster, group string, topics ...string) {
	t.Helper()
	// Offsets are set from outside only for a group with no members: a stopped process's members
	// leave as it closes, or are dropped when their session runs out.
	eventually(t, "group "+group+" to have no members", func() bool {
		n, err := kafka.GroupMembers(context.Background(), kc, group)
		return err == nil && n == 0
	})
	client := &kafkago.Client{Addr: kafkago.TCP(kc.Brokers...)}
	req := &kafkago.OffsetCommitRequest{GroupID: kc.Group(group), GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{}}
	for _, topic := range topics {
		topic = kc.Topic(topic)
		for p := range testPartitions {
			req.Topics[topic] = append(req.Topics[topic], kafkago.OffsetCommit{Partition: p, Offset: 0})
		}
	}
	resp, err := client.OffsetCommit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				t.Fatalf("rewind %s on %s/%d: %v", group, topic, p.Partition, p.Error)
			}
		}
	}
}

// TestReplayingWholeTopicsChangesNothing rewinds every consumer group — booking, payment,
// notification, ticket and the web's — to the start of everything it ever read and lets them
// read it all again: no booking is decided twice, no card charged, text sent or ticket issued
// again, nothing new is announced and no status moves.
func TestReplayingWholeTopicsChangesNothing(t *testing.T) {
	c := newCluster(t)
	targets := []string{TargetWeb, TargetBooking, TargetPayment, TargetNotification, TargetTicket}
	running := map[string]*process{}
	for _, target := range targets {
		running[target] = c.start(target)
	}
	show := c.futureShow()

	var ids []string
	for i, card := range []string{cardApproves, cardDeclined, cardApproves, cardNoFunds, cardApproves} {
		ids = append(ids, c.mustBook(show.ID, []string{string(rune('A'+i)) + "5"}, card).BookingID)
	}
	ids = append(ids, c.mustBook(show.ID, []string{"A5"}, cardApproves).BookingID) // seat taken
	before := map[string]apiStatus{}
	for _, id := range ids {
		before[id] = c.waitFinal(id)
	}
	counts := func() map[string]int {
		out := map[string]int{}
		for name, query := range map[string]string{
			"charges":  `SELECT count(*) FROM payment_sandbox.charges`,
			"payments": `SELECT count(*) FROM payment.payments`,
			"bookings": `SELECT count(*) FROM booking.bookings`,
			"held":     `SELECT count(*) FROM booking.held_seats`,
			"tickets":  `SELECT count(*) FROM ticket.tickets`,
			"texts":    `SELECT count(*) FROM sms_sandbox.messages`,
			"stages":   `SELECT count(*) FROM web.booking_stages`,
		} {
			var n int
			if err := c.db().Get(&n, query); err != nil {
				t.Fatal(err)
			}
			out[name] = n
		}
		for _, topic := range event.Topics {
			out[topic] = int(topicEndOffset(t, c.kc, topic))
		}
		return out
	}
	outboxesEmpty := func() bool {
		var n int
		_ = c.db().Get(&n, `SELECT (SELECT count(*) FROM web.outbox) + (SELECT count(*) FROM booking.outbox)
			+ (SELECT count(*) FROM payment.outbox) + (SELECT count(*) FROM notification.outbox) + (SELECT count(*) FROM ticket.outbox)`)
		return n == 0
	}
	// A failed booking's SMS stage comes after its final status: wait until every booking has
	// all its stages (ticketed 5, failed 4, rejected 2) before taking the picture to compare.
	settled := map[string]int{"ticketed": 5, "failed": 4, "rejected": 2}
	for _, id := range ids {
		eventually(t, "booking "+id+" to have all its stages", func() bool {
			var st apiStatus
			c.getJSON(c.statusPath(id), &st)
			before[id] = st
			return len(st.Stages) == settled[st.Status]
		})
	}
	eventually(t, "the outboxes to drain", outboxesEmpty)
	// The web's stages and the booking service's release of a failed booking's seats follow the
	// same payment outcome, each read on its own: the picture waits for the release too, so
	// only the ticketed bookings' seats (one each) are held.
	ticketed := 0
	for _, id := range ids {
		if before[id].Status == "ticketed" {
			ticketed++
		}
	}
	eventually(t, "the booking service to release the failed bookings' seats", func() bool {
		var held int
		return c.db().Get(&held, `SELECT count(*) FROM booking.held_seats`) == nil && held == ticketed
	})
	was := counts()

	for _, target := range targets {
		running[target].stop(t)
	}
	c.web = nil
	rewindGroup(t, c.kc, booking.GroupID, event.TopicBookingMovie, event.TopicPayment)
	rewindGroup(t, c.kc, payment.GroupID, event.TopicMovieFound)
	rewindGroup(t, c.kc, notification.ContactsGroupID, event.TopicBookingMovie)
	rewindGroup(t, c.kc, notification.GroupID, event.TopicPayment)
	rewindGroup(t, c.kc, ticket.GroupID, event.TopicNotificationSent)
	rewindGroup(t, c.kc, "web-web-requests", event.TopicBookingMovie)
	rewindGroup(t, c.kc, "web-web", event.TopicMovieFound, event.TopicPayment, event.TopicNotificationSent, event.TopicTicketDetails)
	for _, target := range targets {
		running[target] = c.start(target)
	}

	// Every part has read everything again once its log shows the last ticketed booking.
	last := ids[len(ids)-2]
	for _, target := range targets {
		eventually(t, target+" to replay up to the last booking", func() bool {
			return strings.Contains(running[target].logs.String(), last)
		})
	}
	eventually(t, "the outboxes to drain", outboxesEmpty)
	if now := counts(); !equalCounts(now, was) {
		t.Errorf("after replaying every topic: %v, before: %v", now, was)
	}
	for _, id := range ids {
		var st apiStatus
		c.getJSON(c.statusPath(id), &st)
		if st.Status != before[id].Status || len(st.Stages) != len(before[id].Stages) {
			t.Errorf("booking %s went from %q (%d stages) to %q (%d stages) on replay", id,
				before[id].Status, len(before[id].Stages), st.Status, len(st.Stages))
		}
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// projectionSnapshot is the web's booking-status table and stages as a page would show them
// (without updated_at, which records when a row was last written, not what happened).
func projectionSnapshot(t *testing.T, c *cluster) string {
	t.Helper()
	var rows []string
	if err := c.db().Select(&rows, `SELECT concat_ws('|', b.id, b.show_id, array_to_string(b.seats, ','), b.customer_name,
			b.phone_masked, b.card_brand, b.card_last4, b.status, b.reason, b.ticket::text, b.created_at::text,
			(SELECT string_agg(concat_ws('~', s.name, s.at::text, s.detail, s.event_id), ';' ORDER BY s.at, s.name)
			 FROM web.booking_stages s WHERE s.booking_id = b.id))
		FROM web.bookings b ORDER BY b.id`); err != nil {
		t.Fatal(err)
	}
	return strings.Join(rows, "\n")
}

// TestWebProjectionRebuiltFromTheTopics: `replay offsets` shows every group caught up; with the
// web stopped, `replay rebuild-web` empties its booking-status table and rewinds its groups; the
// web started again rebuilds the table from the five topics, equal to the original row for row.
func TestWebProjectionRebuiltFromTheTopics(t *testing.T) {
	c := newCluster(t)
	webProcess := c.start(TargetWeb)
	for _, target := range []string{TargetBooking, TargetPayment, TargetNotification, TargetTicket} {
		c.start(target)
	}
	show := c.futureShow()
	var ids []string
	for i, card := range []string{cardApproves, cardDeclined, cardApproves, cardNoFunds, cardApproves, cardApproves} {
		ids = append(ids, c.mustBook(show.ID, []string{fmt.Sprintf("D%d", i%5+1)}, card).BookingID) // the last: seat taken
	}
	for _, id := range ids {
		c.waitFinal(id)
	}
	toolEnv := c.kafkaEnv()
	toolEnv["DATABASE_URL"] = c.dbURL
	cfg, err := LoadConfig(env(toolEnv))
	if err != nil {
		t.Fatal(err)
	}
	replay := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runReplay(context.Background(), cfg, args, &out)
		return out.String(), err
	}
	eventually(t, "every group caught up", func() bool {
		out, err := replay("offsets")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, line := range lines[1:] {
			if f := strings.Fields(line); f[len(f)-1] != "0" {
				return false
			}
		}
		// booking (2 topics), payment, contacts, notification, ticket, web requests, web stages (4)
		return len(lines)-1 == 11*testPartitions
	})
	want := projectionSnapshot(t, c)
	if strings.Count(want, "\n") != len(ids)-1 || !strings.Contains(want, "ticketed") || !strings.Contains(want, "rejected") {
		t.Fatalf("the projection before the rebuild:\n%s", want)
	}

	if _, err := replay("rebuild-web"); err == nil || !strings.Contains(err.Error(), "stop every web replica") {
		t.Errorf("rebuild-web with the web running: %v, want a refusal", err)
	}
	webProcess.stop(t)
	eventually(t, "the web's groups empty", func() bool {
		for _, sub := range web.ProjectionSubscriptions(cfg.WebInstance) {
			if n, err := kafka.GroupMembers(context.Background(), c.kc, sub.Group); err != nil || n > 0 {
				return false
			}
		}
		return true
	})
	if out, err := replay("rebuild-web"); err != nil {
		t.Fatal(err)
	} else {
		t.Log(strings.TrimSpace(out))
	}
	if got := projectionSnapshot(t, c); got != "" {
		t.Fatalf("after rebuild-web the table still holds:\n%s", got)
	}

	c.web = c.start(TargetWeb)
	var got string
	eventually(t, "the projection rebuilt", func() bool { got = projectionSnapshot(t, c); return got == want })
	for _, id := range ids {
		if st := c.waitFinal(id); st.Status == "" {
			t.Errorf("booking %s unknown to the rebuilt web", id)
		}
	}
}
