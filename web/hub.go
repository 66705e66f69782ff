package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/r3labs/sse/v2"
)

// CloseEvent is the SSE event that ends a booking's stream. The page's EventSource closes on it
// (sse-close), or the browser would reconnect forever.
const CloseEvent = "close"

// StreamKind is what a stream carries: HTML fragments for the status page, JSON for scripts.
type StreamKind string

// The two kinds of booking stream.
const (
	StreamHTML StreamKind = "html"
	StreamJSON StreamKind = "json"
)

// Renderer turns a booking's stages into SSE events of one kind.
type Renderer interface {
	// StageEvent renders stage number seq (1-based) of b.
	StageEvent(kind StreamKind, b BookingStatus, seq int) (name string, data []byte, err error)
	// OutcomeEvents renders what follows the last stage of a finished booking (its ticket or
	// the reason it failed), before the stream closes.
	OutcomeEvents(kind StreamKind, b BookingStatus) (names []string, data [][]byte, err error)
}

// Hub fans booking progress out to browsers and scripts over server-sent events, on top of
// r3labs/sse. Each connection gets a stream of its own, so it can first be sent the stages it
// missed (after Last-Event-ID), then each new stage once and in order, then a close event.
//
// r3labs is used in its safe configuration (see ../shared/STACK.md): no replay log, multi-line
// data split into data: lines, streams removed by the library when their one subscriber leaves,
// TryPublish so a stuck browser cannot block the projection.
//
// A followed booking is read once, when its first connection comes in; after that the hub keeps
// it up to date from the news of each stage (Notify), so a stage costs its streams no read.
type Hub struct {
	server *sse.Server
	load   func(ctx context.Context, bookingID string) (BookingStatus, error)
	render Renderer
	log    *slog.Logger

	mu        sync.Mutex
	byBooking map[string]map[string]*stream // booking id → stream id → stream
	known     map[string]*BookingStatus     // booking id → what its streams know of it, all stages uncut, while it has streams
	stale     map[string]bool               // bookings told of a stage with no news to apply: read again
	notifying map[string]bool               // bookings whose streams are being caught up now
	renotify  map[string]bool               // … and were told of another stage meanwhile
	loads     chan struct{}                 // bounds the database reads of catching up at once
	closing   bool
	closed    chan struct{} // closed by Close: streams outside the hub (/ops) end too
	// writeTimeout is how long a connection has to take each write (streamWriteTimeout).
	writeTimeout time.Duration
}

type stream struct {
	mu        sync.Mutex
	id        string
	bookingID string
	kind      StreamKind
	cancel    context.CancelFunc // ends the connection
	ready     bool               // the library has registered the subscriber: publishing reaches it
	sent      int                // stages already sent on this stream
	closed    bool
}

// maxStreamLifetime ends a connection that has been open far longer than any booking takes;
// the browser reconnects with Last-Event-ID and loses nothing.
const maxStreamLifetime = 30 * time.Minute

// NewHub returns a hub that reads bookings through load, with every stage stored (in any order),
// and renders them through render.
func NewHub(load func(ctx context.Context, bookingID string) (BookingStatus, error), render Renderer, log *slog.Logger) *Hub {
	h := &Hub{load: load, render: render, log: log, byBooking: map[string]map[string]*stream{},
		known: map[string]*BookingStatus{}, stale: map[string]bool{},
		notifying: map[string]bool{}, renotify: map[string]bool{}, loads: make(chan struct{}, maxConcurrentLoads),
		closed: make(chan struct{}), writeTimeout: streamWriteTimeout}
	server := sse.New()
	server.AutoReplay = false
	server.AutoStream = true
	server.SplitData = true
	server.BufferSize = 64
	server.Headers = map[string]string{"X-Accel-Buffering": "no"} // nginx: don't buffer the stream
	server.OnSubscribe = h.onSubscribe
	server.OnUnsubscribe = h.onUnsubscribe
	h.server = server
	return h
}

// Serve streams one booking's progress to the caller, starting after the stages it already has:
// Last-Event-ID on a reconnect, or ?after=N from a page that was rendered with N stages (so it
// does not flicker back to the first one). It returns when the booking has ended and its close
// event is written, or when the caller goes away. If the booking cannot be read it returns the
// error at once, with nothing written, for the caller to answer.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, kind StreamKind, bookingID string) error {
	after := 0
	for _, v := range []string{r.URL.Query().Get("after"), r.Header.Get("Last-Event-ID")} {
		if n, err := strconv.Atoi(v); err == nil && n > after {
			after = n
		}
	}
	// Cancelling the request makes the library unsubscribe and return, so the server ends the
	// response: after the close event, at shutdown, or when the stream has lived too long.
	ctx, cancel := context.WithTimeout(r.Context(), maxStreamLifetime)
	defer cancel()
	streamID := string(kind) + "." + bookingID + "." + randomID()
	s := &stream{id: streamID, bookingID: bookingID, kind: kind, cancel: cancel, sent: after}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		comeBackLater(w)
		return nil
	}
	if h.byBooking[bookingID] == nil {
		h.byBooking[bookingID] = map[string]*stream{}
	}
	h.byBooking[bookingID][streamID] = s
	h.mu.Unlock()
	defer h.forget(streamID) // also when the library refused the request before subscribing

	// Read once registered: a stage stored after this read is told to the hub, which applies it
	// to what it knows (or reads again), and what the stream is first sent comes from there.
	b, err := h.load(r.Context(), bookingID)
	if err != nil {
		return err
	}
	h.learn(bookingID, b)

	// The library reads the stream id from the query and would refuse a Last-Event-ID that is
	// not a number; ours are, but a stale tab might send anything.
	r2 := r.Clone(ctx)
	r2.URL.RawQuery = "stream=" + streamID
	r2.Header.Del("Last-Event-ID")
	h.server.ServeHTTP(&closingWriter{ResponseWriter: newDeadlineWriter(w, h.writeTimeout), cancel: cancel}, r2)
	return nil
}

// Notify is called after a booking gains a stage: every stream following it catches up. apply
// brings the booking as the hub knows it up to date with that stage (StageNews.Apply); with nil
// apply the booking is read again. It returns at once: the catching up happens on a goroutine of
// the booking's own, so the projection's consumer never waits for a render per stage. Stages
// told while a booking's streams are being caught up are coalesced into one more round.
func (h *Hub) Notify(bookingID string, apply func(*BookingStatus)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byBooking[bookingID]) == 0 {
		return
	}
	if b := h.known[bookingID]; b != nil && apply != nil {
		apply(b)
	} else {
		// Not read yet (the connection's own read may predate the stage) or nothing to apply.
		h.stale[bookingID] = true
	}
	if h.notifying[bookingID] {
		h.renotify[bookingID] = true
		return
	}
	h.notifying[bookingID] = true
	go h.notifyRounds(bookingID)
}

// maxConcurrentLoads bounds the bookings read at once for their streams, so catching up never
// takes every database connection from the consumers.
const maxConcurrentLoads = 8

// loadTimeout bounds one read of a booking for its streams.
const loadTimeout = 10 * time.Second

func (h *Hub) notifyRounds(bookingID string) {
	for {
		h.catchUpBooking(bookingID)
		h.mu.Lock()
		if !h.renotify[bookingID] {
			delete(h.notifying, bookingID)
			h.mu.Unlock()
			return
		}
		delete(h.renotify, bookingID)
		h.mu.Unlock()
	}
}

// catchUpBooking sends every connection following the booking what it has not had yet, from
// what the hub knows of it; when that is stale, the booking is read once for all of them.
func (h *Hub) catchUpBooking(bookingID string) {
	h.mu.Lock()
	streams := make([]*stream, 0, len(h.byBooking[bookingID]))
	for _, s := range h.byBooking[bookingID] {
		streams = append(streams, s)
	}
	b, fresh := h.knownCopy(bookingID)
	delete(h.stale, bookingID) // a read starting now sees every stage told so far
	h.mu.Unlock()
	if len(streams) == 0 {
		return
	}
	if !fresh {
		var err error
		if b, err = h.read(bookingID); err != nil {
			// Nothing else may come to catch them up (this may have been the last stage): the
			// connections are ended, and browsers reconnect and resume after their Last-Event-ID.
			h.log.Warn("sse: load booking; ending its connections", "booking_id", bookingID, "err", err)
			for _, s := range streams {
				s.cancel()
			}
			return
		}
	}
	// Learned before any stream is caught up: a stream subscribing meanwhile starts from it.
	b = h.learn(bookingID, b)
	for _, s := range streams {
		h.catchUp(s, &b)
	}
}

// read loads a booking for its streams, bounded in time and in reads at once.
func (h *Hub) read(bookingID string) (BookingStatus, error) {
	h.loads <- struct{}{}
	defer func() { <-h.loads }()
	// Bounded: a database that hangs must not keep the read slots, and so every stream, for good.
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	return h.load(ctx, bookingID)
}

// learn merges a booking as read into what the hub knows of it, while it has streams, and
// returns what the hub now knows (a copy).
func (h *Hub) learn(bookingID string, read BookingStatus) BookingStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byBooking[bookingID]) == 0 {
		return read
	}
	merged := read
	if known := h.known[bookingID]; known != nil {
		merged = mergeBookings(*known, read)
	}
	h.known[bookingID] = &merged
	out := merged
	out.Stages = slices.Clone(merged.Stages)
	return out
}

// knownCopy is a copy of what the hub knows of a booking, and whether that is up to date with
// every stage told (false when it must be read). Called with h.mu held.
func (h *Hub) knownCopy(bookingID string) (BookingStatus, bool) {
	known := h.known[bookingID]
	if known == nil {
		return BookingStatus{}, false
	}
	b := *known
	b.Stages = slices.Clone(known.Stages)
	return b, !h.stale[bookingID]
}

// OpenStreams counts the connections currently following a booking.
func (h *Hub) OpenStreams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.byBooking {
		n += len(m)
	}
	return n
}

// Close ends every stream and refuses new ones, for shutdown. It ends each connection the way
// a leaving browser does (the library's own Close would strand a goroutine per connection).
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closing {
		close(h.closed)
	}
	h.closing = true
	for _, streams := range h.byBooking {
		for _, s := range streams {
			s.cancel()
		}
	}
}

// onSubscribe runs once the library has registered the connection: from here on what is
// published on its stream reaches it, so it can be caught up.
func (h *Hub) onSubscribe(streamID string, _ *sse.Subscriber) {
	if s := h.stream(streamID); s != nil {
		s.mu.Lock()
		s.ready = true
		s.mu.Unlock()
		// Read after the stream is ready: a round that skipped it (not ready yet) had learned its
		// stage before, so it is here; a later round finds the stream ready. Stale: read again.
		h.mu.Lock()
		b, fresh := h.knownCopy(s.bookingID)
		h.mu.Unlock()
		if !fresh {
			read, err := h.read(s.bookingID)
			if err != nil {
				h.log.Warn("sse: load booking; ending the connection", "booking_id", s.bookingID, "err", err)
				s.cancel()
				return
			}
			b = h.learn(s.bookingID, read)
		}
		h.catchUp(s, &b)
	}
}

func (h *Hub) onUnsubscribe(streamID string, _ *sse.Subscriber) { h.forget(streamID) }

func (h *Hub) forget(streamID string) {
	parts := strings.SplitN(streamID, ".", 3)
	if len(parts) != 3 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.byBooking[parts[1]], streamID)
	if len(h.byBooking[parts[1]]) == 0 {
		delete(h.byBooking, parts[1])
		delete(h.known, parts[1])
		delete(h.stale, parts[1])
	}
}

func (h *Hub) stream(streamID string) *stream {
	parts := strings.SplitN(streamID, ".", 3)
	if len(parts) != 3 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byBooking[parts[1]][streamID]
}

// catchUp sends a stream every stage it has not had yet, in order, and the outcome and close
// event once the booking has ended. The stream's lock makes each stage go out exactly once
// even when a new stage and a (re)connection race. loaded is the booking with every stage
// stored, or nil to load it here; an older snapshot than the stream has seen simply sends nothing.
func (h *Hub) catchUp(s *stream, loaded *BookingStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.ready {
		return
	}
	// When something goes wrong here the connection is ended: nothing else would catch it up
	// (a finished booking has no more stages to come), while a browser reconnects by itself
	// and resumes after its Last-Event-ID.
	if loaded == nil {
		b, err := h.load(context.Background(), s.bookingID)
		if err != nil {
			h.log.Warn("sse: load booking; ending the connection", "booking_id", s.bookingID, "err", err)
			s.cancel()
			return
		}
		loaded = &b
	}
	b := *loaded
	b.Stages = orderedStages(b.Stages)
	for seq := s.sent + 1; seq <= len(b.Stages); seq++ {
		name, data, err := h.render.StageEvent(s.kind, b, seq)
		if err != nil {
			h.log.Warn("sse: render stage; ending the connection", "booking_id", s.bookingID, "err", err)
			s.cancel()
			return
		}
		if !h.publish(s.id, strconv.Itoa(seq), name, data) {
			s.cancel() // gone or stuck: the browser resumes from Last-Event-ID
			return
		}
		s.sent = seq
	}
	if !IsFinal(b.Status) || s.sent < finalStageCount(b) {
		return
	}
	names, datas, err := h.render.OutcomeEvents(s.kind, b)
	if err != nil {
		h.log.Warn("sse: render outcome; ending the connection", "booking_id", s.bookingID, "err", err)
		s.cancel()
		return
	}
	// Same id as the last stage: a reconnect after this point resumes after the stages.
	last := strconv.Itoa(s.sent)
	for i := range names {
		if !h.publish(s.id, last, names[i], datas[i]) {
			s.cancel()
			return
		}
	}
	if s.closed = h.publish(s.id, last, CloseEvent, []byte(b.Status)); !s.closed {
		s.cancel()
	}
}

// finalStageCount is how many stages a finished booking shows before its stream closes: a
// failed payment's SMS stage may come later and is not waited for.
func finalStageCount(b BookingStatus) int {
	n := 0
	for _, st := range b.Stages {
		n++
		if IsFinal(st.Name) {
			return n
		}
	}
	return len(b.Stages) + 1 // the final stage itself has not arrived in order yet
}

func (h *Hub) publish(streamID, id, name string, data []byte) bool {
	ev := &sse.Event{Event: []byte(name), Data: data}
	if id != "" {
		ev.ID = []byte(id)
	}
	return h.server.TryPublish(streamID, ev)
}

// closingWriter cancels the request once the close event has been flushed to the client. It
// also keeps the stream out of every cache: the library says no-cache, but a booking's stream is
// private (no-store), like its pages.
type closingWriter struct {
	http.ResponseWriter
	cancel   context.CancelFunc
	sawClose bool
	started  bool
}

func (c *closingWriter) start() {
	if !c.started {
		c.started = true
		c.Header().Set("Cache-Control", "no-store")
	}
}

func (c *closingWriter) WriteHeader(status int) {
	c.start()
	c.ResponseWriter.WriteHeader(status)
}

// closeLine is how the library writes our close event's name: in a Write call of its own.
var closeLine = "event: " + CloseEvent + "\n"

func (c *closingWriter) Write(p []byte) (int, error) {
	c.start()
	if string(p) == closeLine {
		c.sawClose = true
	}
	return c.ResponseWriter.Write(p)
}

func (c *closingWriter) Flush() {
	c.start()
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if c.sawClose {
		c.cancel()
	}
}

// comeBackLater answers a stream asked for while the server shuts down: an empty event stream
// that ends at once. A browser's EventSource then reconnects by itself, sending its
// Last-Event-ID (to another replica, or this one restarted). An error status instead would
// make it give up, and htmx would open a new one without Last-Event-ID, resending stages.
func comeBackLater(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("retry: 2000\n\n"))
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
