package web

import (
	"errors"
	"net/http"
	"os"
	"sync"
	"time"
)

// Connections that never finish: a body that is never sent, more event streams than a person
// opens, a stream nobody reads. Each would hold a goroutine and a connection for good.

// The kinds of event stream, as the boxoffice_sse_streams_open metric labels them.
const (
	streamsOfBookings = "booking" // /bookings/{id}/events and /api/bookings/{id}/events
	streamsOfSeats    = "seats"   // /shows/{id}/seats/events
	streamsOfOps      = "ops"     // /ops/events
)

var streamKinds = []string{streamsOfBookings, streamsOfSeats, streamsOfOps}

// streamWriteTimeout is how long a client has to take each write of an event stream: one that
// stops reading is dropped, and its handler freed, once the connection's buffers are full.
const streamWriteTimeout = 10 * time.Second

// errBodyTimeout is a request whose body did not arrive within REQUEST_BODY_TIMEOUT.
var errBodyTimeout = errors.New("request body not sent in time")

// bodyReadFailed turns a failure to read a request's body into what the client is told: too
// slow (errBodyTimeout), or, for anything else, bad.
func bodyReadFailed(err error, bad *badRequestError) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errBodyTimeout
	}
	return bad
}

// setReadDeadline gives a request with a body (ContentLength -1: chunked, or not known in
// advance) timeout to send all of it; after that its reads fail and its handler answers at once.
// Not http.Server.ReadTimeout: net/http would cancel every long-lived stream's context when it
// passed. Once the body has been read to its end, net/http clears the deadline itself (its
// background read starts), so a slow handler is not cut off.
//
//go:noinline
func setReadDeadline(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if timeout > 0 && r.ContentLength != 0 {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	}
}

// tooManyStreamsError refuses an event stream beyond STREAMS_PER_ADDRESS (perAddress) or
// beyond STREAMS_MAX.
type tooManyStreamsError struct{ perAddress bool }

func (e *tooManyStreamsError) Error() string {
	if e.perAddress {
		return "too many event streams from one address"
	}
	return "too many event streams open"
}

// streamLimits counts the event streams open, per kind and per client address, and caps them.
type streamLimits struct {
	perAddress, total int // 0: no cap
	mu                sync.Mutex
	open              int
	byKind            map[string]int
	byAddress         map[string]int
}

func newStreamLimits(perAddress, total int) *streamLimits {
	return &streamLimits{perAddress: perAddress, total: total, byKind: map[string]int{}, byAddress: map[string]int{}}
}

// take counts a stream of kind from addr as open, or refuses it beyond a cap; release gives
// the slot back.
func (l *streamLimits) take(slot streamSlot) error {
	kind, addr := slot.kind, slot.addr
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perAddress > 0 && l.byAddress[addr] >= l.perAddress {
		return &tooManyStreamsError{perAddress: true}
	}
	if l.total > 0 && l.open >= l.total {
		return &tooManyStreamsError{}
	}
	l.open++
	l.byKind[kind]++
	l.byAddress[addr]++
	return nil
}

func (l *streamLimits) release(slot streamSlot) {
	kind, addr := slot.kind, slot.addr
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	l.byKind[kind]--
	if l.byAddress[addr]--; l.byAddress[addr] <= 0 {
		delete(l.byAddress, addr)
	}
}

// count is how many streams of kind are open.
func (l *streamLimits) count(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byKind[kind]
}

// limitStreams counts a stream of kind as open from when it is accepted until its handler
// returns, refusing it beyond the caps: 429 beyond the client address's, 503 beyond the total.
func (s *Server) limitStreams(kind string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		slot, err := s.takeStream(kind, w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		defer s.streams.release(slot)
		next(w, r)
	}
}

// errStreamNotGET is a stream asked for with a body or by HEAD. net/http notices a client that
// leaves only once the request's body has been read, and throws away what a HEAD answer writes:
// either would keep a stream, and its slot, open for good after its client left.
var errStreamNotGET = &badRequestError{"An event stream is read with a GET and no body."}

// streamSlot is one open stream, as streamLimits counts it.
type streamSlot struct{ kind, addr string }

// takeStream opens a slot for a stream of kind, or says why not. Out of line, to keep the frames
// an event stream waits under lean (see textRequest).
//
//go:noinline
func (s *Server) takeStream(kind string, w http.ResponseWriter, r *http.Request) (streamSlot, error) {
	if r.Method != http.MethodGet || r.ContentLength != 0 {
		// Closing the connection after the answer: net/http would otherwise wait for the unread
		// body before sending it.
		w.Header().Set("Connection", "close")
		return streamSlot{}, errStreamNotGET
	}
	slot := streamSlot{kind: kind, addr: clientAddress(r, s.deps.TrustedProxies)}
	return slot, s.streams.take(slot)
}

// deadlineWriter gives every write of an event stream a deadline (timeout from the write), so
// a client that stops reading ends its stream instead of holding it: net/http cancels the
// request's context when a write fails, and the stream ends with it. Used for the streams whose
// writes r3labs/sse makes.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	armed   bool // a deadline is set for the event being written: one per event, not per field
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration) *deadlineWriter {
	return &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if !d.armed {
		_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
		d.armed = true
	}
	return d.ResponseWriter.Write(p)
}

// Flush ends an event: the next write sets a deadline of its own.
func (d *deadlineWriter) Flush() {
	if !d.armed {
		_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	}
	_ = d.rc.Flush()
	d.armed = false
}

// Unwrap lets http.ResponseController reach the connection through the wrapper.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }
