package main

import (
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"
)

// BenchmarkBookingRequestToTicket books one booking at a time through the whole system (web,
// five topics, four services, PostgreSQL, the embedded broker) and reports how long each took
// from POST /api/bookings to the ticket event on its SSE stream: p50, p99 and max.
//
//	go test -run '^$' -bench BookingRequestToTicket -benchtime 200x .
func BenchmarkBookingRequestToTicket(b *testing.B) {
	c := startAll(b)
	type slot struct{ show, seat string }
	var slots []slot
	var movies struct{ Movies []struct{ ID string } }
	c.getJSON("/api/movies", &movies)
	for _, m := range movies.Movies {
		var shows struct{ Shows []apiShow }
		c.getJSON("/api/shows?movie_id="+url.QueryEscape(m.ID), &shows)
		for _, s := range shows.Shows {
			if time.Until(s.StartsAt) < time.Hour {
				continue
			}
			for label, state := range c.seatStates(s.ID) {
				if state == "free" {
					slots = append(slots, slot{s.ID, label})
				}
			}
		}
	}
	if len(slots) < b.N {
		b.Fatalf("%d free seats for %d bookings", len(slots), b.N)
	}
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		resp := c.mustBook(slots[i].show, []string{slots[i].seat}, cardApproves)
		events := readSSE(b, c.web.url+resp.EventsURL, "")
		took = append(took, time.Since(start))
		if n := len(events); n < 2 || events[n-3].Name != "ticketed" {
			b.Fatalf("booking %d ended with %v", i, eventNames(events))
		}
	}
	b.StopTimer()
	slices.Sort(took)
	pct := func(p float64) time.Duration { return took[int(p*float64(len(took)-1))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
	fmt.Printf("request → ticket over %d sequential bookings: p50 %s, p99 %s, max %s\n",
		len(took), pct(0.50), pct(0.99), took[len(took)-1])
}
