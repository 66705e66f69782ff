package web

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"
)

// SeatEvent is the SSE event that carries seat changes to a show's live seat map: out-of-band
// fragments, one per changed seat, that htmx swaps in by id.
const SeatEvent = "seats"

// SeatHub streams a show's seat changes to everyone looking at its seat map. Like Hub, each
// connection has a stream of its own and remembers what it was sent, so it is sent each change
// once, whatever order notifications and (re)connections come in.
//
// Notifications for one show are coalesced: while its seats are being read and sent, further
// notifications only mark it dirty, so a burst of bookings costs one read per round, not one per
// booking.
type SeatHub struct {
	server *sse.Server
	seats  func(ctx context.Context, showID string) (SeatMap, error)
	since  func(ctx context.Context, showID string, version int64, renderedAt time.Time) ([]string, error)
	render func(ctx context.Context, showID string, changed map[string]SeatState) ([]byte, error)
	log    *slog.Logger

	reads atomic.Uint64 // numbers every read of a show's seats, in the order they start

	mu      sync.Mutex
	byShow  map[string]map[string]*seatStream // show id → stream id → stream
	streams map[string]*seatStream            // stream id → stream
	dirty   map[string]bool                   // shows notified while a round is running
	running map[string]bool                   // shows with a round running
	closing bool
	// writeTimeout is how long a connection has to take each write (streamWriteTimeout).
	writeTimeout time.Duration
}

type seatStream struct {
	mu         sync.Mutex
	id         string
	showID     string
	version    int64     // the version the page was rendered at, or its browser last received
	renderedAt time.Time // when the page was rendered; zero: only versions count
	cancel     context.CancelFunc
	ready      bool
	known      map[string]SeatState // what this connection's map shows of the held and sold seats
	// knownRead is the number of the read known came from: a read that started earlier may
	// have missed a commit the later one saw, and is not sent to this connection.
	knownRead uint64
}

// seatReadTimeout bounds each read behind a seat stream, so one slow query cannot hold a
// show's viewers up for long.
const seatReadTimeout = 5 * time.Second

// NewSeatHub returns a hub reading seats through seats and since, rendering through render.
func NewSeatHub(seats func(context.Context, string) (SeatMap, error), since func(context.Context, string, int64, time.Time) ([]string, error),
	render func(context.Context, string, map[string]SeatState) ([]byte, error), log *slog.Logger) *SeatHub {
	h := &SeatHub{seats: seats, since: since, render: render, log: log,
		byShow: map[string]map[string]*seatStream{}, streams: map[string]*seatStream{}, dirty: map[string]bool{}, running: map[string]bool{},
		writeTimeout: streamWriteTimeout}
	server := sse.New()
	server.AutoReplay = false
	server.AutoStream = true
	server.SplitData = true
	server.BufferSize = 64
	server.Headers = map[string]string{"X-Accel-Buffering": "no"}
	server.OnSubscribe = h.onSubscribe
	server.OnUnsubscribe = func(streamID string, _ *sse.Subscriber) { h.forget(streamID) }
	h.server = server
	return h
}

// Serve streams a show's seat changes after version (the ?v= the page was rendered with, or the
// Last-Event-ID of a reconnecting browser when newer) and renderedAt (when the page was
// rendered: a change numbered before the page's version may commit after it), until the caller
// goes away.
func (h *SeatHub) Serve(w http.ResponseWriter, r *http.Request, showID string, version int64, renderedAt time.Time) {
	// A reconnecting browser's Last-Event-ID is "<version>.<read time>" of the last event it got.
	lastVersion, lastRead, _ := strings.Cut(r.Header.Get("Last-Event-ID"), ".")
	version = max(version, parseSeatVersion(lastVersion))
	if t := parseRenderedAt(lastRead); t.After(renderedAt) {
		renderedAt = t
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxStreamLifetime)
	defer cancel()
	streamID := "seats." + showID + "." + randomID()
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		comeBackLater(w)
		return
	}
	if h.byShow[showID] == nil {
		h.byShow[showID] = map[string]*seatStream{}
	}
	st := &seatStream{id: streamID, showID: showID, version: version, renderedAt: renderedAt, cancel: cancel}
	h.byShow[showID][streamID] = st
	h.streams[streamID] = st
	h.mu.Unlock()
	defer h.forget(streamID)

	r2 := r.Clone(ctx)
	r2.URL.RawQuery = "stream=" + streamID
	r2.Header.Del("Last-Event-ID")
	h.server.ServeHTTP(newDeadlineWriter(w, h.writeTimeout), r2)
}

// Notify is called after a booking of the show changed status.
func (h *SeatHub) Notify(showID string) {
	h.mu.Lock()
	if len(h.byShow[showID]) == 0 {
		h.mu.Unlock()
		return
	}
	if h.running[showID] {
		h.dirty[showID] = true
		h.mu.Unlock()
		return
	}
	h.running[showID] = true
	h.mu.Unlock()
	go h.rounds(showID)
}

// rounds sends a show's changes until no notification came in during the last round. A round
// that could not read the seats is tried again a second later while anyone is watching: no
// other notification may come to correct the maps.
func (h *SeatHub) rounds(showID string) {
	for {
		if !h.round(showID) {
			time.Sleep(time.Second)
			h.mu.Lock()
			watched := len(h.byShow[showID]) > 0 && !h.closing
			h.mu.Unlock()
			if watched {
				continue
			}
		}
		h.mu.Lock()
		if !h.dirty[showID] {
			delete(h.running, showID)
			h.mu.Unlock()
			return
		}
		delete(h.dirty, showID)
		h.mu.Unlock()
	}
}

// round reads a show's seats once and sends every connection what changed for it; false if the
// seats could not be read.
func (h *SeatHub) round(showID string) bool {
	h.mu.Lock()
	streams := make([]*seatStream, 0, len(h.byShow[showID]))
	for _, s := range h.byShow[showID] {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	if len(streams) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), seatReadTimeout)
	defer cancel()
	read := h.reads.Add(1)
	current, err := h.seats(ctx, showID)
	if err != nil {
		h.log.Warn("sse: load seats; trying again", "show_id", showID, "err", err)
		return false
	}
	// Most connections on a show were sent the same thing: render each distinct change once.
	rendered := map[string][]byte{}
	for _, s := range streams {
		s.mu.Lock()
		// A connection caught up from a newer read than this one is left alone: sending it this
		// older state would turn seats back.
		if s.ready && s.knownRead < read {
			changed := seatChanges(s.known, current.States)
			h.send(ctx, s, current, changed, rendered)
			s.known, s.knownRead = current.States, read
		}
		s.mu.Unlock()
	}
	return true
}

// onSubscribe catches a new connection up: the seats that changed after its page was rendered.
// The reads happen before the stream is locked, so rounds for the show's other viewers never
// wait on them. The whole map is read first and the changed seats second: a booking that commits
// between the two is then sent with its state from the map (if older), and the round this asks
// for at the end sends its newer one. (The other way round it would be in the map taken as
// known, never sent, and never different again.)
func (h *SeatHub) onSubscribe(streamID string, _ *sse.Subscriber) {
	s := h.stream(streamID)
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), seatReadTimeout)
	defer cancel()
	read := h.reads.Add(1)
	current, err := h.seats(ctx, s.showID)
	if err != nil {
		h.log.Warn("sse: load seats; ending the connection", "show_id", s.showID, "err", err)
		s.cancel()
		return
	}
	labels, err := h.since(ctx, s.showID, s.version, s.renderedAt)
	if err != nil {
		h.log.Warn("sse: load changed seats; ending the connection", "show_id", s.showID, "err", err)
		s.cancel()
		return
	}
	changed := make(map[string]SeatState, len(labels))
	for _, label := range labels {
		changed[label] = current.State(label)
	}
	s.mu.Lock()
	s.ready = true
	s.known, s.knownRead = current.States, read
	h.send(ctx, s, current, changed, nil)
	s.mu.Unlock()
	h.Notify(s.showID)
}

// send renders and publishes one connection's changes as of the read at, whose version and time
// are the event's id: a browser reconnecting sends it back as Last-Event-ID and is sent only what
// changed after it. A connection that cannot take them is ended, and the browser's reconnect
// catches it up.
func (h *SeatHub) send(ctx context.Context, s *seatStream, at SeatMap, changed map[string]SeatState, cache map[string][]byte) {
	if len(changed) == 0 {
		return
	}
	key := changesKey(changed)
	data, ok := cache[key]
	if !ok {
		var err error
		if data, err = h.render(ctx, s.showID, changed); err != nil {
			h.log.Warn("sse: render seats; ending the connection", "show_id", s.showID, "err", err)
			s.cancel()
			return
		}
		if cache != nil {
			cache[key] = data
		}
	}
	id := strconv.FormatInt(at.Version, 10) + "." + strconv.FormatInt(at.ReadAt.UnixMilli(), 10)
	ev := &sse.Event{ID: []byte(id), Event: []byte(SeatEvent), Data: data}
	if !h.server.TryPublish(s.id, ev) {
		s.cancel()
	}
}

// seatChanges lists the seats whose state differs between two maps of held and sold seats.
func seatChanges(before, after map[string]SeatState) map[string]SeatState {
	changed := map[string]SeatState{}
	for label, st := range after {
		if before[label] != st {
			changed[label] = st
		}
	}
	for label := range before {
		if _, ok := after[label]; !ok {
			changed[label] = SeatFree
		}
	}
	return changed
}

func changesKey(changed map[string]SeatState) string {
	var b strings.Builder
	for _, label := range slices.Sorted(maps.Keys(changed)) {
		b.WriteString(label + "=" + string(changed[label]) + ";")
	}
	return b.String()
}

// OpenStreams counts the connections following a seat map.
func (h *SeatHub) OpenStreams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.byShow {
		n += len(m)
	}
	return n
}

// Close ends every stream and refuses new ones, for shutdown.
func (h *SeatHub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closing = true
	for _, streams := range h.byShow {
		for _, s := range streams {
			s.cancel()
		}
	}
}

func (h *SeatHub) forget(streamID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.streams[streamID]
	if !ok {
		return
	}
	delete(h.streams, streamID)
	delete(h.byShow[s.showID], streamID)
	if len(h.byShow[s.showID]) == 0 {
		delete(h.byShow, s.showID)
	}
}

func (h *SeatHub) stream(streamID string) *seatStream {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[streamID]
}

// parseSeatVersion reads ?v= from a seat map's stream URL; a missing or bad one is 0, which
// sends every seat that ever changed: more than needed, never less.
func parseSeatVersion(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// parseRenderedAt reads ?t= (Unix milliseconds) from a seat map's stream URL; missing or bad is
// zero, and then only versions count.
func parseRenderedAt(v string) time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
