package main

import (
	"context"
	"strings"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/payment"
)

// rewindGroup sets a stopped consumer group back to the start of every partition of topics, so
// its next member reads everything again.
func rewindGroup(t *testing.T, brokers []string, group string, topics ...string) {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...)}
	req := &kafkago.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{}}
	for _, topic := range topics {
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

// TestReplayingWholeTopicsChangesNothing rewinds the booking and payment services to the start
// of everything they ever read and lets them read it all again: no booking is decided twice,
// no card charged twice, nothing new is announced.
func TestReplayingWholeTopicsChangesNothing(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetNotification)
	c.start(TargetTicket)
	bookingSvc := c.start(TargetBooking)
	paymentSvc := c.start(TargetPayment)
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
		} {
			var n int
			if err := c.db().Get(&n, query); err != nil {
				t.Fatal(err)
			}
			out[name] = n
		}
		for _, topic := range []string{event.TopicMovieFound, event.TopicPayment} {
			out[topic] = int(topicEndOffset(t, c.brokers, topic))
		}
		return out
	}
	was := counts()

	bookingSvc.stop(t)
	paymentSvc.stop(t)
	rewindGroup(t, c.brokers, booking.GroupID, event.TopicBookingMovie, event.TopicPayment)
	rewindGroup(t, c.brokers, payment.GroupID, event.TopicMovieFound)
	replayedBooking := c.start(TargetBooking)
	replayedPayment := c.start(TargetPayment)

	// Both have read everything again once their logs show the last booking's events.
	last := ids[len(ids)-2] // the last one that was charged
	eventually(t, "the replay to reach the last booking", func() bool {
		return strings.Contains(replayedBooking.logs.String(), last) && strings.Contains(replayedPayment.logs.String(), last)
	})

	if now := counts(); !equalCounts(now, was) {
		t.Errorf("after replaying every topic: %v, before: %v", now, was)
	}
	for _, id := range ids {
		var st apiStatus
		c.getJSON("/api/bookings/"+id, &st)
		if st.Status != before[id].Status {
			t.Errorf("booking %s went from %q to %q on replay", id, before[id].Status, st.Status)
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
