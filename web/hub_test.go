package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stageNames renders each stage as its name, so a test can read the stream.
type stageNames struct{}

func (stageNames) StageEvent(_ StreamKind, b BookingStatus, seq int) (string, []byte, error) {
	return b.Stages[seq-1].Name, []byte(b.Stages[seq-1].Name), nil
}

func (stageNames) OutcomeEvents(StreamKind, BookingStatus) ([]string, [][]byte, error) {
	return []string{"outcome"}, [][]byte{[]byte("done")}, nil
}

// bookings is an in-memory stand-in for the projection: stages are added by the test.
type bookings struct {
	mu sync.Mutex
	m  map[string]*BookingStatus
}

func (bs *bookings) load(_ context.Context, id string) (BookingStatus, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.m[id]
	if !ok {
		return BookingStatus{}, ErrBookingNotFound
	}
	cp := *b
	cp.Stages = append([]Stage(nil), b.Stages...)
	return cp, nil
}

func (bs *bookings) add(id, stage string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m[id] == nil {
		bs.m[id] = &BookingStatus{ID: id}
	}
	b := bs.m[id]
	b.Stages = append(b.Stages, Stage{Name: stage, At: time.Now()})
	b.Status = stage
}

func newTestHub(t *testing.T) (*Hub, *bookings, string) {
	store := &bookings{m: map[string]*BookingStatus{}}
	hub := NewHub(store.load, stageNames{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := hub.Serve(w, r, StreamJSON, strings.TrimPrefix(r.URL.Path, "/")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return hub, store, srv.URL
}

// follow reads one stream's event names until the server ends it.
func follow(t *testing.T, url string) <-chan []string {
	out := make(chan []string, 1)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer resp.Body.Close()
		var names []string
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			if name, ok := strings.CutPrefix(scanner.Text(), "event: "); ok {
				names = append(names, name)
			}
		}
		out <- names
	}()
	return out
}

// expectStreams waits for each stream to end and checks it carried the events want lists.
func expectStreams(t *testing.T, results []<-chan []string, want string) {
	t.Helper()
	for i, r := range results {
		select {
		case got := <-r:
			if fmt.Sprint(got) != want {
				t.Errorf("stream %d: %v, want %s", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d never ended", i)
		}
	}
}

// TestStreamsGetEveryStageOnceThenClose races many connections against stages being added:
// each must see every stage exactly once, in order, then the outcome and the close.
func TestStreamsGetEveryStageOnceThenClose(t *testing.T) {
	hub, store, url := newTestHub(t)
	path := []string{StatusRequested, StatusConfirmed, StatusPaid, StatusNotified, StatusTicketed}
	var results []<-chan []string
	for i := range 40 {
		id := fmt.Sprintf("b%d", i)
		store.add(id, path[0])
		results = append(results, follow(t, url+"/"+id))
		go func() {
			for _, stage := range path[1:] {
				store.add(id, stage)
				hub.Notify(id, nil)
			}
		}()
	}
	want := fmt.Sprint(append(append([]string{}, path...), "outcome", CloseEvent))
	expectStreams(t, results, want)
	if n := hub.OpenStreams(); n != 0 {
		t.Errorf("%d streams still registered after every connection ended", n)
	}
}

// TestCloseEndsStreamsWithoutStrandingGoroutines: shutdown ends every open stream; the
// library's own Close would leave a goroutine per connection blocked forever.
func TestCloseEndsStreamsWithoutStrandingGoroutines(t *testing.T) {
	hub, store, url := newTestHub(t)
	before := runtime.NumGoroutine()
	var results []<-chan []string
	for i := range 50 {
		id := fmt.Sprintf("open%d", i)
		store.add(id, StatusRequested) // never finishes
		results = append(results, follow(t, url+"/"+id))
	}
	for deadline := time.Now().Add(5 * time.Second); hub.OpenStreams() < 50 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	hub.Close()
	for i, r := range results {
		select {
		case <-r:
		case <-time.After(5 * time.Second):
			t.Fatalf("stream %d still open after Close", i)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	var after int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if after = runtime.NumGoroutine(); after <= before+5 {
			break
		}
	}
	if after > before+5 {
		t.Errorf("%d goroutines before the streams, %d after they were closed: some are stranded", before, after)
	}
	resp, err := http.Get(url + "/late")
	if err != nil {
		t.Fatal(err)
	}
	late, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// An empty stream that asks to be retried: the browser comes back with its Last-Event-ID.
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" || string(late) != "retry: 2000\n\n" {
		t.Errorf("a stream opened after Close: %d %s %q, want an empty event stream asking for a retry", resp.StatusCode, resp.Header.Get("Content-Type"), late)
	}
}

// TestStageToldWhileAStreamConnectsReachesIt: a connection's first catch-up uses the booking as
// read when it came in. A stage stored after that read, and told while the connection was not
// yet subscribed, must still reach it: here it is the last stage for a while, so nothing later
// would bring it.
func TestStageToldWhileAStreamConnectsReachesIt(t *testing.T) {
	store := &bookings{m: map[string]*BookingStatus{}}
	store.add("b", StatusRequested)
	var hub *Hub
	var first atomic.Bool
	first.Store(true)
	load := func(ctx context.Context, id string) (BookingStatus, error) {
		b, err := store.load(ctx, id)
		if first.CompareAndSwap(true, false) {
			// The connection's read is done; a stage lands and is told before it subscribes.
			store.add(id, StatusConfirmed)
			hub.Notify(id, nil)
			for {
				hub.mu.Lock()
				told := !hub.notifying[id]
				hub.mu.Unlock()
				if told {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		return b, err
	}
	hub = NewHub(load, stageNames{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := hub.Serve(w, r, StreamJSON, "b"); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
		}
	}))
	defer srv.Close()
	defer hub.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := make(chan string, 10)
	go func() {
		scanner := bufio.NewScanner(resp.Body)
		for scanner.Scan() {
			if name, ok := strings.CutPrefix(scanner.Text(), "event: "); ok {
				names <- name
			}
		}
		close(names)
	}()
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case name, ok := <-names:
			if !ok {
				t.Fatalf("the stream ended after %v", got)
			}
			got = append(got, name)
		case <-deadline:
			t.Fatalf("the stream got %v and then nothing; want the stage stored while it connected", got)
		}
	}
	if got[0] != StatusRequested || got[1] != StatusConfirmed {
		t.Errorf("streamed %v, want requested then confirmed", got)
	}
}

// TestStagesWithNewsReachStreamsWithoutAReadEach: a connection reads its booking once; the stages
// after that come with their news (what StageNews.Apply does, here a stand-in) and reach every
// stream in order, then the outcome and the close, with no read per stage.
func TestStagesWithNewsReachStreamsWithoutAReadEach(t *testing.T) {
	store := &bookings{m: map[string]*BookingStatus{}}
	var reads atomic.Int64
	hub := NewHub(func(ctx context.Context, id string) (BookingStatus, error) {
		reads.Add(1)
		return store.load(ctx, id)
	}, stageNames{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := hub.Serve(w, r, StreamJSON, strings.TrimPrefix(r.URL.Path, "/")); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
		}
	}))
	defer srv.Close()
	defer hub.Close()

	const connections = 3
	store.add("b", StatusRequested)
	var results []<-chan []string
	for range connections {
		results = append(results, follow(t, srv.URL+"/b"))
	}
	// Every connection in and its read learned: a stage told before that is read again, rightly.
	settled := func() bool {
		hub.mu.Lock()
		streams, known := hub.byBooking["b"], hub.known["b"]
		hub.mu.Unlock()
		ready := 0
		for _, s := range streams {
			s.mu.Lock()
			if s.ready {
				ready++
			}
			s.mu.Unlock()
		}
		return known != nil && ready == connections
	}
	for deadline := time.Now().Add(5 * time.Second); !settled(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the streams never opened")
		}
	}
	opened := reads.Load()
	path := []string{StatusConfirmed, StatusPaid, StatusNotified, StatusTicketed}
	for _, stage := range path {
		store.add("b", stage) // stored, as the projection does before it tells
		hub.Notify("b", func(b *BookingStatus) {
			b.Stages = append(b.Stages, Stage{Name: stage})
			b.Status = stage
		})
	}
	want := fmt.Sprint([]string{StatusRequested, StatusConfirmed, StatusPaid, StatusNotified, StatusTicketed, "outcome", CloseEvent})
	expectStreams(t, results, want)
	if opened > connections {
		t.Errorf("%d reads for %d connections", opened, connections)
	}
	if n := reads.Load() - opened; n != 0 {
		t.Errorf("%d reads for %d stages told with their news; want none", n, len(path))
	}
}
