package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/ops"
)

// metricValue reads one sample from /metrics, or -1 if it is not there.
func (c *cluster) metricValue(series string) float64 {
	c.t.Helper()
	_, body := c.staffPage("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				c.t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// TestOpsAndMetricsShowLiveFigures: /metrics counts the bookings that ended, by outcome and
// reason, with stage latencies; every group's lag, outbox backlog and dead letters are there and
// move when something happens (a poison message is parked by each of the three groups reading
// its topic, and counted); /api/ops says the same as JSON; /ops renders it and streams updates over SSE.
func TestOpsAndMetricsShowLiveFigures(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	ids := []string{
		c.mustBook(show.ID, []string{"K1"}, cardApproves).BookingID,
		c.mustBook(show.ID, []string{"K2"}, cardApproves).BookingID,
		c.mustBook(show.ID, []string{"K3"}, cardDeclined).BookingID,
		c.mustBook(show.ID, []string{"K1"}, cardApproves).BookingID, // taken
	}
	for _, id := range ids {
		c.waitFinal(id)
	}
	for series, want := range map[string]float64{
		`boxoffice_booking_outcomes_total{outcome="ticketed",reason=""}`:            2,
		`boxoffice_booking_outcomes_total{outcome="failed",reason="card_declined"}`: 1,
		`boxoffice_booking_outcomes_total{outcome="rejected",reason="seat_taken"}`:  1,
		`boxoffice_booking_stage_seconds_count{stage="ticketed"}`:                   2,
		`boxoffice_booking_stage_seconds_count{stage="confirmed"}`:                  3,
		`boxoffice_sse_streams_open{kind="booking"}`:                                0,
		`boxoffice_outbox_pending{table="web.outbox"}`:                              0,
		`boxoffice_dead_letters{topic="booking-movie.dlt"}`:                         0,
	} {
		if got := c.metricValue(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if sum := c.metricValue(`boxoffice_booking_stage_seconds_sum{stage="ticketed"}`); sum <= 0 || sum > 2*waitForOutcome.Seconds() {
		t.Errorf("request-to-ticket seconds summed over 2 bookings: %v", sum)
	}
	eventually(t, "every group caught up in /api/ops", func() bool {
		var snap ops.Snapshot
		if status := c.staffJSON("/api/ops", &snap); status != http.StatusOK || len(snap.Errors) > 0 {
			t.Fatalf("/api/ops: %d %v", status, snap.Errors)
		}
		caughtUp := 0
		for _, g := range snap.Groups {
			// One process runs every part, each consumer with CONSUMER_READERS members.
			if g.Members == defaultReaders(t) && g.Lag == 0 && len(g.Offsets) > 0 {
				caughtUp++
			}
		}
		return len(snap.Groups) == 7 && caughtUp == 7 && len(snap.Topics) == 5 && len(snap.Outboxes) == 5
	})
	if lag := c.metricValue(`boxoffice_consumer_lag{group="booking",partition="0",topic="booking-movie"}`); lag != 0 {
		t.Errorf("booking's lag on booking-movie/0: %v, want 0 once caught up", lag)
	}

	// A poison message: three groups read booking-movie, and each parks it.
	w := &kafkago.Writer{Addr: kafkago.TCP(c.kc.Brokers...), BatchTimeout: time.Millisecond, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kafkago.Message{Topic: c.kc.Topic(event.TopicBookingMovie), Key: []byte("x"), Value: []byte("not json")}); err != nil {
		t.Fatal(err)
	}
	// Parking is at least once, like all delivery: a rebalance between a group's park and its
	// commit parks the message again (seen once on three Apache Kafka brokers, a group's members
	// still settling). So: each group parked it, with the reason, and /metrics and /ops count the
	// messages the dead-letter topic holds.
	var parked []kafka.DeadLetter
	eventually(t, "the poison message parked by each of the three groups", func() bool {
		var err error
		if parked, err = kafka.ListDeadLetters(context.Background(), c.kc, []string{event.TopicBookingMovie}); err != nil {
			t.Fatal(err)
		}
		groups := map[string]bool{}
		for _, dl := range parked {
			if !strings.HasPrefix(dl.Error, "malformed event") {
				t.Fatalf("dead letter of %s says %q, want the reason it could not be read", dl.Group, dl.Error)
			}
			groups[dl.Group] = true
		}
		return len(groups) == 3 && groups["booking"] && groups["web-web-requests"] && groups["notification-contacts"]
	})
	eventually(t, "the dead letters on /metrics", func() bool {
		time.Sleep(time.Second) // the collector reuses a snapshot for a second
		var err error
		if parked, err = kafka.ListDeadLetters(context.Background(), c.kc, []string{event.TopicBookingMovie}); err != nil {
			t.Fatal(err)
		}
		return c.metricValue(`boxoffice_dead_letters{topic="booking-movie.dlt"}`) == float64(len(parked))
	})

	status, page := c.staffPage("/ops")
	if status != http.StatusOK || !strings.Contains(page, "Consumer groups") || !strings.Contains(page, "notification-contacts") ||
		!strings.Contains(page, `sse-connect="/ops/events"`) {
		t.Errorf("/ops: %d, want the groups rendered and an SSE connection for updates", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.web.url+"/ops/events", nil)
	req.Header.Set("Authorization", "Bearer "+c.doorKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	var event []string
	for scanner.Scan() {
		line := scanner.Text()
		if line == "" && len(event) > 0 {
			break // the end of the first event
		}
		if line != "" {
			event = append(event, line)
		}
	}
	joined := strings.Join(event, "\n")
	if !strings.HasPrefix(joined, "event: ops") || !regexp.MustCompile(`booking-movie\.dlt</th><td class="num">`+strconv.Itoa(len(parked))+`<`).MatchString(joined) {
		t.Errorf("first /ops/events event:\n%.600s\nwant an ops update showing the %d dead letters", joined, len(parked))
	}
}

// TestPartsWithoutAWebServerAnswerHealthChecks: a part started with OPS_ADDR answers /healthz
// and /readyz (database and broker reachable), and `boxoffice health URL` — the container health
// check — passes on it and fails on a part that is not there.
func TestPartsWithoutAWebServerAnswerHealthChecks(t *testing.T) {
	c := newCluster(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeTCPPorts(t, 1))
	c.startWith(TargetBooking, map[string]string{"OPS_ADDR": addr})
	var out strings.Builder
	if err := runHealth(context.Background(), []string{"http://" + addr + "/readyz"}, &out); err != nil || !strings.Contains(out.String(), `"database":"ok"`) || !strings.Contains(out.String(), `"kafka":"ok"`) {
		t.Errorf("health of booking's /readyz: %v %s, want 200 with database and kafka ok", err, out.String())
	}
	if err := runHealth(context.Background(), []string{"http://" + addr + "/healthz"}, io.Discard); err != nil {
		t.Errorf("health of booking's /healthz: %v", err)
	}
	if err := runHealth(context.Background(), []string{fmt.Sprintf("http://127.0.0.1:%d/readyz", freeTCPPorts(t, 1))}, io.Discard); err == nil {
		t.Error("health of a port nobody listens on passed")
	}
}

// defaultReaders is how many members each consumer runs when CONSUMER_READERS is not set.
func defaultReaders(t *testing.T) int {
	t.Helper()
	cfg, err := LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg.ConsumerReaders
}
