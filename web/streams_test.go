package web

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// streamsOpenMetric reads boxoffice_sse_streams_open{kind} from the metrics' page.
func streamsOpenMetric(t testing.TB, m *metrics, kind string) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, `boxoffice_sse_streams_open{kind="`+kind+`"} `); ok {
			return v
		}
	}
	t.Fatalf("no boxoffice_sse_streams_open{kind=%q} in /metrics", kind)
	return ""
}

// TestAStreamNobodyReadsIsDropped: a client that opens a booking's or a seat map's stream and
// then never reads, while events keep coming, is disconnected once a write has waited the write
// timeout: the handler returns, and the stream's place and its count in
// boxoffice_sse_streams_open{kind} go back to zero. (Without a deadline the write would wait
// for ever, and the stream with it.)
func TestAStreamNobodyReadsIsDropped(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 256<<10)
	log := slog.New(slog.DiscardHandler)
	for _, kind := range []string{streamsOfBookings, streamsOfSeats} {
		t.Run(kind, func(t *testing.T) {
			s := &Server{streams: newStreamLimits(0, 0), log: log}
			m := newMetrics(s.streams, nil)
			var serve http.HandlerFunc
			var publish func(n int)
			switch kind {
			case streamsOfBookings:
				store := &bookings{m: map[string]*BookingStatus{}}
				store.add("b", StatusRequested)
				hub := NewHub(store.load, stageNames{}, log)
				hub.writeTimeout = time.Second
				defer hub.Close()
				serve = func(w http.ResponseWriter, r *http.Request) { _ = hub.Serve(w, r, StreamJSON, "b") }
				// A booking has a handful of stages: large ones stand for many, published as
				// catching up publishes them.
				publish = func(n int) {
					hub.mu.Lock()
					defer hub.mu.Unlock()
					for id := range hub.byBooking["b"] {
						hub.publish(id, strconv.Itoa(n), StatusConfirmed, big)
					}
				}
			case streamsOfSeats:
				seats := &fakeSeats{states: map[string]SeatState{}, changedAt: map[string]int64{}}
				render := func(context.Context, string, map[string]SeatState) ([]byte, error) { return big, nil }
				hub := NewSeatHub(seats.read, seats.since, render, log)
				hub.writeTimeout = time.Second
				defer hub.Close()
				serve = func(w http.ResponseWriter, r *http.Request) { hub.Serve(w, r, "show", 0, time.Time{}) }
				publish = func(n int) {
					seats.set(fmt.Sprintf("A%d", n), SeatHeld)
					hub.Notify("show")
				}
			}
			returned := make(chan struct{})
			limited := s.limitStreams(kind, serve)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				limited(w, r)
				close(returned)
			}))
			defer srv.Close()

			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close() // before srv.Close: a handler still writing would keep it waiting
			if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: boxoffice.test\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); s.streams.count(kind) != 1; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the stream never opened")
				}
			}
			if got := streamsOpenMetric(t, m, kind); got != "1" {
				t.Errorf("boxoffice_sse_streams_open{kind=%q} %s with the stream open, want 1", kind, got)
			}
			// Events keep coming and the client reads none of them.
			giveUp := time.After(60 * time.Second)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
		publishing:
			for n := 1; ; n++ {
				select {
				case <-returned:
					break publishing
				case <-giveUp:
					t.Fatalf("the stream is still open a minute after its client stopped reading (%d events published)", n)
				case <-tick.C:
					publish(n)
				}
			}
			if n := s.streams.count(kind); n != 0 {
				t.Errorf("%d %s streams counted open after the handler returned", n, kind)
			}
			if got := streamsOpenMetric(t, m, kind); got != "0" {
				t.Errorf("boxoffice_sse_streams_open{kind=%q} %s after the stream was dropped, want 0", kind, got)
			}
		})
	}
}
