package web

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSeats is a show's seats as a test changes them; a hook runs between a stream's two reads.
type fakeSeats struct {
	mu          sync.Mutex
	states      map[string]SeatState
	version     int64
	changedAt   map[string]int64 // seat → version of its last change
	betweenRead func()
}

func (f *fakeSeats) set(label string, st SeatState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version++
	if st == SeatFree {
		delete(f.states, label)
	} else {
		f.states[label] = st
	}
	f.changedAt[label] = f.version
}

func (f *fakeSeats) read(context.Context, string) (SeatMap, error) {
	f.mu.Lock()
	m := SeatMap{States: map[string]SeatState{}, Version: f.version, ReadAt: time.Now()}
	for k, v := range f.states {
		m.States[k] = v
	}
	f.mu.Unlock()
	f.afterFirstRead()
	return m, nil
}

func (f *fakeSeats) since(_ context.Context, _ string, version int64, _ time.Time) ([]string, error) {
	f.mu.Lock()
	var out []string
	for label, v := range f.changedAt {
		if v > version {
			out = append(out, label)
		}
	}
	f.mu.Unlock()
	f.afterFirstRead()
	return out, nil
}

// afterFirstRead runs the hook once, after whichever read comes first: a booking commits
// between the two reads that catch a new stream up.
func (f *fakeSeats) afterFirstRead() {
	f.mu.Lock()
	hook := f.betweenRead
	f.betweenRead = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// TestSeatStreamMissesNoCommitWhileConnecting: a booking that commits while a seat map's
// stream is being caught up still reaches it, and the stream's events say which seats changed.
func TestSeatStreamMissesNoCommitWhileConnecting(t *testing.T) {
	for range 20 { // the race is in the order of the reads: every run takes it
		seats := &fakeSeats{states: map[string]SeatState{}, changedAt: map[string]int64{}}
		var hub *SeatHub
		render := func(_ context.Context, _ string, changed map[string]SeatState) ([]byte, error) {
			var parts []string
			for _, label := range slices.Sorted(func(yield func(string) bool) {
				for k := range changed {
					if !yield(k) {
						return
					}
				}
			}) {
				parts = append(parts, label+"="+string(changed[label]))
			}
			return []byte(strings.Join(parts, " ")), nil
		}
		hub = NewSeatHub(seats.read, seats.since, render, slog.New(slog.DiscardHandler))
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hub.Serve(w, r, "show", 0, time.Time{}) }))
		seats.set("A1", SeatHeld) // before the page
		seats.betweenRead = func() {
			seats.set("B2", SeatHeld)
			hub.Notify("show")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{}
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() && seen["B2"] != "held" {
			if data, ok := strings.CutPrefix(scanner.Text(), "data: "); ok {
				for _, kv := range strings.Fields(data) {
					label, st, _ := strings.Cut(kv, "=")
					seen[label] = st
				}
			}
		}
		cancel()
		resp.Body.Close()
		hub.Close()
		srv.Close()
		if seen["A1"] != "held" || seen["B2"] != "held" {
			t.Fatalf("the stream showed %v, want A1 and B2 held: a booking committed while it connected was lost", seen)
		}
	}
}
