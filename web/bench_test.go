package web

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSeatMapFanOut: one seat changes on a show that 1,000 browsers are watching; the time
// until every one of them has received the change over SSE, and the allocations it takes.
//
//	go test -run '^$' -bench SeatMapFanOut -benchmem ./web
func BenchmarkSeatMapFanOut(b *testing.B) {
	const viewers = 1000
	seats := &fakeSeats{states: map[string]SeatState{}, changedAt: map[string]int64{}}
	render := func(_ context.Context, _ string, changed map[string]SeatState) ([]byte, error) {
		var parts []string
		for label, st := range changed {
			parts = append(parts, `<span id="cell-`+label+`" hx-swap-oob="true">`+string(st)+`</span>`)
		}
		return []byte(strings.Join(parts, "")), nil
	}
	hub := NewSeatHub(seats.read, seats.since, render, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hub.Serve(w, r, "show", 0, time.Time{}) }))
	defer srv.Close()
	defer hub.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: viewers, MaxConnsPerHost: 0}}
	var received atomic.Int64
	for range viewers {
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer resp.Body.Close()
			scanner := bufio.NewScanner(resp.Body)
			for scanner.Scan() {
				if scanner.Text() == "event: "+SeatEvent {
					received.Add(1)
				}
			}
		}()
	}
	for hub.OpenStreams() < viewers {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // every stream caught up (nothing to send) and ready
	received.Store(0)
	want := int64(0)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		seats.set(fmt.Sprintf("A%d", i%20+1), []SeatState{SeatHeld, SeatFree}[i/20%2])
		i++
		want += viewers
		hub.Notify("show")
		for received.Load() < want {
			time.Sleep(50 * time.Microsecond)
		}
	}
}
