package web

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/ops"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// snapshots shares one operations snapshot among /ops, /ops/events, /api/ops and /metrics: the
// broker and the databases are read at most once a second, however many pages and scrapers ask.
type snapshots struct {
	read  func(context.Context) ops.Snapshot
	mu    sync.Mutex
	last  ops.Snapshot
	taken time.Time // when last was finished
}

func (s *snapshots) get(ctx context.Context) ops.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.taken) >= time.Second {
		s.last, s.taken = s.read(ctx), time.Now()
	}
	return s.last
}

// metrics is what /metrics exports. Booking figures are recorded by the replica that stores each
// stage first (replicas share the booking-status table), so sum them across replicas; the
// broker and outbox figures describe the whole system and are the same on every replica, so
// take them from one.
type metrics struct {
	registry *prometheus.Registry
	stage    *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
	busy     prometheus.Counter
}

// latencyBuckets run from 2.5 ms to about 40 s: a healthy hop takes milliseconds, a hold runs
// for minutes, and both must be readable.
var latencyBuckets = prometheus.ExponentialBuckets(0.0025, 2.5, 12)

func newMetrics(streams *streamLimits, snapshot func(context.Context) ops.Snapshot) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "boxoffice_booking_stage_seconds",
			Help:    "Time from a booking's request to each of its stages (stage=ticketed is end to end), by event time.",
			Buckets: latencyBuckets,
		}, []string{"stage"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "boxoffice_booking_outcomes_total",
			Help: "Bookings that reached an end, by outcome (ticketed, rejected, failed) and reason code.",
		}, []string{"outcome", "reason"}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "boxoffice_bookings_refused_busy_total",
			Help: "Book presses this web replica refused (503 busy) because too many of the bookings it took were overdue: the pipeline is behind.",
		}),
	}
	m.registry.MustRegister(m.stage, m.outcomes, m.busy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, kind := range streamKinds {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "boxoffice_sse_streams_open",
			Help:        "Server-sent event streams open on this web replica, by kind: booking, seats (seat maps) or ops.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 { return float64(streams.count(kind)) }))
	}
	if snapshot != nil {
		m.registry.MustRegister(opsCollector{snapshot: snapshot})
	}
	return m
}

// refusedBusy counts a Book press turned away by the backlog.
func (m *metrics) refusedBusy() {
	if m != nil {
		m.busy.Inc()
	}
}

// recorded observes a stage stored for the first time.
func (m *metrics) recorded(stage string, sinceRequest time.Duration, reasonCode string) {
	if m == nil {
		return
	}
	m.stage.WithLabelValues(stage).Observe(max(sinceRequest, 0).Seconds())
	switch stage {
	case StatusTicketed, StatusRejected, StatusFailed:
		m.outcomes.WithLabelValues(stage, reasonLabel(reasonCode)).Inc()
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// knownReasons are the codes the reason label may take: a processor's decline code comes from
// outside, and an unbounded label would let it create series at will.
var knownReasons = map[string]bool{
	"": true, event.RejectUnknownShow: true, event.RejectShowStarted: true, event.RejectUnknownSeat: true,
	event.RejectSeatTaken: true, event.RejectInvalid: true, event.RejectSeatLimit: true, event.PaymentHoldExpired: true, event.PaymentLate: true,
	gateway.DeclineGeneric: true, gateway.DeclineInsufficientFunds: true, gateway.DeclineProcessing: true,
}

func reasonLabel(code string) string {
	if knownReasons[code] {
		return code
	}
	return "other"
}

// opsCollector turns the shared ops snapshot into gauges at scrape time.
type opsCollector struct {
	snapshot func(context.Context) ops.Snapshot
}

var (
	lagDesc      = prometheus.NewDesc("boxoffice_consumer_lag", "Messages a consumer group has yet to read, per partition.", []string{"group", "topic", "partition"}, nil)
	membersDesc  = prometheus.NewDesc("boxoffice_consumer_group_members", "Members of a consumer group.", []string{"group"}, nil)
	endDesc      = prometheus.NewDesc("boxoffice_topic_end_offset", "Messages a topic partition has received.", []string{"topic", "partition"}, nil)
	deadDesc     = prometheus.NewDesc("boxoffice_dead_letters", "Messages ever parked on a dead-letter topic (re-driven ones stay counted): alert on a rise.", []string{"topic"}, nil)
	pendingDesc  = prometheus.NewDesc("boxoffice_outbox_pending", "Events written to an outbox and not yet published.", []string{"table"}, nil)
	oldestDesc   = prometheus.NewDesc("boxoffice_outbox_oldest_seconds", "Age of the oldest unpublished event in an outbox.", []string{"table"}, nil)
	opsErrorDesc = prometheus.NewDesc("boxoffice_ops_read_errors", "Parts of the operations snapshot that could not be read at this scrape.", nil, nil)
)

func (c opsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagDesc, membersDesc, endDesc, deadDesc, pendingDesc, oldestDesc, opsErrorDesc} {
		ch <- d
	}
}

func (c opsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	snap := c.snapshot(ctx)
	cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, g := range snap.Groups {
		gauge(membersDesc, float64(g.Members), g.Name)
		for _, o := range g.Offsets {
			gauge(lagDesc, float64(o.Lag), g.Name, o.Topic, strconv.Itoa(o.Partition))
		}
	}
	for _, t := range snap.Topics {
		for p, end := range t.Ends {
			gauge(endDesc, float64(end), t.Topic, strconv.Itoa(p))
		}
	}
	for _, t := range snap.DeadLetters {
		gauge(deadDesc, float64(t.Total), t.Topic)
	}
	for _, o := range snap.Outboxes {
		gauge(pendingDesc, float64(o.Pending), o.Table)
		gauge(oldestDesc, o.Oldest.Seconds(), o.Table)
	}
	gauge(opsErrorDesc, float64(len(snap.Errors)))
}
