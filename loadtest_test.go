package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPercentilesAreNearestRank: p50 of 1..100 ms is 50 ms, p99 is 99 ms, p99.9 and max 100 ms.
func TestPercentilesAreNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := percentilesOf(ds)
	if p.N != 100 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.P999 != 100 || p.Max != 100 {
		t.Errorf("percentiles of 1..100 ms: %+v", p)
	}
	if empty := percentilesOf(nil); empty.N != 0 || empty.Max != 0 {
		t.Errorf("percentiles of nothing: %+v", empty)
	}
}

// TestLoadTestAgainstTheSystem runs the load tool's steady and hot-show scenarios, small, at a
// whole system: every steady booking ends in a ticket with its latencies measured, and the hot
// show sells exactly its seats, refusing everyone else with "seat taken".
func TestLoadTestAgainstTheSystem(t *testing.T) {
	c := startAll(t)
	o, err := parseLoadOptions([]string{"-url", c.web.url, "-scenario", "steady", "-rate", "20", "-duration", "2s", "-buyers", "400"})
	if err != nil {
		t.Fatal(err)
	}
	lt := newLoadTester(o)
	ctx := context.Background()
	if err := lt.loadSeats(ctx); err != nil {
		t.Fatal(err)
	}
	steady := lt.steady(ctx, "steady", o.Rate, o.Duration)
	if steady.Sent != 40 || steady.Ticketed != 40 || steady.Errors != 0 || steady.Total.N != 40 ||
		steady.Total.P50 <= 0 || steady.Total.Max < steady.Total.P99 || steady.Accept.P50 <= 0 || steady.Throughput <= 0 {
		t.Errorf("steady 20/s for 2 s: %+v", steady)
	}
	for _, stage := range []string{"confirmed", "paid", "notified", "ticketed"} {
		if steady.Stages[stage].N != 40 {
			t.Errorf("stage %s measured %d times, want 40", stage, steady.Stages[stage].N)
		}
	}
	hot, err := lt.hotShow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seats := hot.Ticketed + hot.Rejected["Seat … is already taken. Pick other seats."]
	t.Logf("hot show: %+v", hot)
	if hot.Sent != 400 || hot.Errors != 0 || !strings.Contains(strings.Join(hot.Notes, ";"), "sold exactly") || seats != 400 {
		t.Errorf("hot show, 400 buyers: sent %d, ticketed %d, rejected %v, errors %d %v; notes %v", hot.Sent, hot.Ticketed, hot.Rejected, hot.Errors, hot.ErrorKinds, hot.Notes)
	}
	var out strings.Builder
	printResults(&out, []scenarioResult{steady, hot})
	if !strings.Contains(out.String(), "p99 ms") || !strings.Contains(out.String(), "hot show: 400 buyers") {
		t.Errorf("the table:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}
