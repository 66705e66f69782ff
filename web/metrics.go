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

	"github.com/boxoffice/boxoffice/services/ops"
)

// metrics is what /metrics exports. Booking figures come from this replica's projection (every
// web replica reads every event, so each reports the whole system's bookings); the broker and
// outbox figures come from an ops snapshot taken at scrape time.
type metrics struct {
	registry *prometheus.Registry
	stage    *prometheus.HistogramVec
	outcomes *prometheus.CounterVec
}

// latencyBuckets run from 2.5 ms to about 40 s: a healthy hop takes milliseconds, a hold runs
// for minutes, and both must be readable.
var latencyBuckets = prometheus.ExponentialBuckets(0.0025, 2.5, 12)

func newMetrics(hub *Hub, snapshot func(context.Context) ops.Snapshot) *metrics {
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
	}
	m.registry.MustRegister(m.stage, m.outcomes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "boxoffice_sse_streams_open",
			Help: "Server-sent event streams open on this web replica.",
		}, func() float64 { return float64(hub.OpenStreams()) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if snapshot != nil {
		m.registry.MustRegister(&opsCollector{snapshot: snapshot})
	}
	return m
}

// recorded observes a stage stored for the first time.
func (m *metrics) recorded(stage string, sinceRequest time.Duration, reasonCode string) {
	if m == nil {
		return
	}
	m.stage.WithLabelValues(stage).Observe(max(sinceRequest, 0).Seconds())
	switch stage {
	case StatusTicketed, StatusRejected, StatusFailed:
		m.outcomes.WithLabelValues(stage, reasonCode).Inc()
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// opsCollector turns an ops snapshot into gauges at scrape time, reusing a snapshot younger than
// a second so two scrapers cost one read.
type opsCollector struct {
	snapshot func(context.Context) ops.Snapshot
	mu       sync.Mutex
	last     ops.Snapshot
}

var (
	lagDesc      = prometheus.NewDesc("boxoffice_consumer_lag", "Messages a consumer group has yet to read, per partition.", []string{"group", "topic", "partition"}, nil)
	membersDesc  = prometheus.NewDesc("boxoffice_consumer_group_members", "Members of a consumer group.", []string{"group"}, nil)
	endDesc      = prometheus.NewDesc("boxoffice_topic_end_offset", "Messages a topic partition has received.", []string{"topic", "partition"}, nil)
	deadDesc     = prometheus.NewDesc("boxoffice_dead_letters", "Messages parked on a dead-letter topic.", []string{"topic"}, nil)
	pendingDesc  = prometheus.NewDesc("boxoffice_outbox_pending", "Events written to an outbox and not yet published.", []string{"table"}, nil)
	oldestDesc   = prometheus.NewDesc("boxoffice_outbox_oldest_seconds", "Age of the oldest unpublished event in an outbox.", []string{"table"}, nil)
	opsErrorDesc = prometheus.NewDesc("boxoffice_ops_read_errors", "Parts of the operations snapshot that could not be read at this scrape.", nil, nil)
)

func (c *opsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagDesc, membersDesc, endDesc, deadDesc, pendingDesc, oldestDesc, opsErrorDesc} {
		ch <- d
	}
}

func (c *opsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.last.At) > time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		c.last = c.snapshot(ctx)
		cancel()
	}
	snap := c.last
	c.mu.Unlock()
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
