// Package web is the User Service: the pages and the JSON API people and scripts book through,
// the projection of every booking's progress it keeps from the five topics, and the SSE hub
// that pushes each stage to the browser as it happens.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/notification/sms"
	"github.com/boxoffice/boxoffice/services/ops"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
	"github.com/boxoffice/boxoffice/static"
	"github.com/boxoffice/boxoffice/templates"
)

// Deps are what the web needs from the outside world.
type Deps struct {
	DB         *sqlx.DB
	Publisher  Publisher
	Tokenizer  gateway.Tokenizer
	SMSInbox   *sms.Sandbox                           // the sandbox provider's inbox, for /dev/sms; nil with a real provider
	KafkaReady func(ctx context.Context) error        // /readyz: is the broker reachable?
	Ops        func(ctx context.Context) ops.Snapshot // /ops and /metrics: the broker's and outboxes' state; nil leaves them out
	// BookingRateLimit is how many booking requests a minute one client address, and one browser
	// session, may send (BOOKING_RATE_LIMIT); 0 turns the limit off, for load tests.
	BookingRateLimit int
	// CapabilityKey signs bookings' tokens (CapabilityKey reads the shared one); empty makes one
	// for this process alone.
	CapabilityKey []byte
	// SecureCookies marks cookies Secure on every request: the site is served over TLS by a
	// proxy in front, so requests reach it as plain HTTP. Without it, only on direct TLS.
	SecureCookies bool
	// TrustedProxies are the reverse proxies in front (TRUSTED_PROXIES): requests from them are
	// rate-limited by the client address they forward.
	TrustedProxies []netip.Prefix
	// DoorKey lets door staff admit tickets (web.DoorKey gives the shared one); empty: nobody can.
	DoorKey string
	// BookingShedAfter: while more than 100 of the bookings this replica took are that long
	// without an outcome, Book presses are refused with a 503 (errBusy). Zero turns it off.
	BookingShedAfter time.Duration
	Now              func() time.Time
	Log              *slog.Logger

	// RequestBodyTimeout is how long a request has to send its body (REQUEST_BODY_TIMEOUT).
	RequestBodyTimeout time.Duration
	// StreamsPerAddress and StreamsMax cap the event streams open at once from one client
	// address and in all (STREAMS_PER_ADDRESS, STREAMS_MAX); 0 is no cap.
	StreamsPerAddress, StreamsMax int
}

// Server serves the site and the API.
type Server struct {
	catalog       *catalog.Store
	relay         *outbox.Relay
	projection    *Projection
	intake        *Intake
	hub           *Hub
	seatHub       *SeatHub
	screenSeats   sync.Map // screen id → []catalog.Seat: seatsOfScreen
	streamedShows sync.Map // show id → struct{}: shows whose seat maps have been streamed (seatEvents)
	metrics       *metrics
	snapshot      func(context.Context) ops.Snapshot // shared and cached; nil without Deps.Ops
	limiter       *rateLimiter
	doorGuesses   *doorGuessLimits
	streams       *streamLimits
	capabilityKey []byte
	deps          Deps
	log           *slog.Logger
}

// NewServer wires the web. Call Projection().Consumer to feed it from Kafka.
func NewServer(d Deps) *Server {
	s := &Server{catalog: catalog.NewStore(d.DB), deps: d, log: d.Log.With("service", "web")}
	s.hub = NewHub(s.loadBookingAsStored, renderer{s}, s.log)
	s.relay = outbox.NewRelay(d.DB, OutboxTable, d.Publisher, s.log)
	s.seatHub = NewSeatHub(nil, nil, s.renderSeatUpdates, s.log)
	s.projection = NewProjection(d.DB, func(showID string, news *StageNews) {
		if news != nil {
			s.hub.Notify(news.BookingID(), func(b *BookingStatus) {
				if news.Apply(b) {
					s.dress(b)
				}
			})
		}
		s.seatHub.Notify(showID)
	}, s.relay, s.log)
	s.seatHub.seats, s.seatHub.since = s.projection.ShowSeats, s.projection.SeatsChangedSince
	var snapshot func(context.Context) ops.Snapshot
	if d.Ops != nil {
		snapshot = (&snapshots{read: d.Ops}).get
		s.snapshot = snapshot
	}
	s.streams = newStreamLimits(d.StreamsPerAddress, d.StreamsMax)
	s.metrics = newMetrics(s.streams, snapshot)
	s.limiter = newRateLimiter(d.BookingRateLimit, d.Now)
	s.doorGuesses = newDoorGuessLimits(d.Now)
	s.capabilityKey = d.CapabilityKey
	if len(s.capabilityKey) == 0 {
		s.capabilityKey = randomKey()
	}
	s.projection.metrics = s.metrics
	s.projection.backlog = newBacklog(d.BookingShedAfter, d.Now)
	s.intake = &Intake{projection: s.projection, tokenizer: d.Tokenizer, secret: s.capabilityKey, now: d.Now}
	return s
}

// Relay publishes the booking requests the web queued; run it as an actor of its own.
func (s *Server) Relay() *outbox.Relay { return s.relay }

// Projection is the web's booking-status projection.
func (s *Server) Projection() *Projection { return s.projection }

// Hub is the SSE fan-out, closed on shutdown.
func (s *Server) Hub() *Hub { return s.hub }

// CloseStreams ends every booking and seat-map stream, for shutdown: they would otherwise
// keep the server from finishing.
func (s *Server) CloseStreams() {
	s.hub.Close()
	s.seatHub.Close()
}

// Handler lists every route of the public port in one place.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", staticFiles())

	// Pages.
	mux.HandleFunc("GET /{$}", s.moviesPage)
	mux.HandleFunc("GET /movies/{id}", s.moviePage)
	mux.HandleFunc("GET /shows/{id}", s.showPage)
	mux.HandleFunc("GET /shows/{id}/seats/events", s.limitStreams(streamsOfSeats, s.seatEvents))
	mux.HandleFunc("POST /shows/{id}/summary", s.requireCSRF(s.showSummary))
	mux.HandleFunc("POST /bookings", s.limitBookings(s.requireCSRF(s.bookingFormSubmit)))
	mux.HandleFunc("GET /bookings", s.myBookingsPage)
	mux.HandleFunc("GET /bookings/{id}", s.bookingPage)
	mux.HandleFunc("GET /bookings/{id}/events", s.limitStreams(streamsOfBookings, s.bookingEvents(StreamHTML)))
	mux.HandleFunc("GET /bookings/{id}/hold", s.holdCountdown)
	mux.HandleFunc("GET /tickets/verify", s.verifyPage)
	mux.HandleFunc("POST /tickets/verify", s.requireCSRF(s.verifySubmit))
	mux.HandleFunc("GET /tickets/door", s.doorSignInPage)
	mux.HandleFunc("POST /tickets/door", s.requireCSRF(s.doorSignIn)) // wrong keys: doorGuessLimits
	mux.HandleFunc("POST /tickets/door/sign-out", s.requireCSRF(s.doorSignOut))
	mux.HandleFunc("GET /bookings/{id}/ticket", s.ticketPrintPage)
	if s.deps.SMSInbox != nil {
		mux.HandleFunc("GET /dev/sms", s.staffKnown(s.smsInboxPage))
		mux.HandleFunc("GET /api/dev/sms", s.staffKnown(s.apiSMSInbox))
	}

	// JSON API: stable, scripts and load tools depend on it.
	mux.HandleFunc("GET /api/movies", s.apiMovies)
	mux.HandleFunc("GET /api/shows", s.apiShows)
	mux.HandleFunc("GET /api/shows/{id}/seats", s.apiSeats)
	mux.HandleFunc("POST /api/bookings", s.limitBookings(s.apiCreateBooking))
	mux.HandleFunc("GET /api/bookings/{id}", s.apiBooking)
	mux.HandleFunc("GET /api/bookings/{id}/events", s.limitStreams(streamsOfBookings, s.bookingEvents(StreamJSON)))
	mux.HandleFunc("GET /api/tickets/verify", s.apiVerifyTicket)
	mux.HandleFunc("POST /api/tickets/admit", s.apiAdmitTicket)
	mux.HandleFunc("GET /api/tickets/{id}", s.apiTicket)

	// Health for anyone; operations and metrics for signed-in staff (or on OPS_ADDR).
	s.operations(mux, s.staffOnly, s.staffKnown)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.fail(w, r, errNotFound) })
	return s.recoverPanics(s.secure(s.admit(mux)))
}

// admit is what every request of the public port passes after the security headers, in one
// frame: a deadline for its body, no bytes that are not text, a session for a page. An event
// stream's goroutine waits, for hours maybe, under every middleware's frame, and only a lean
// stack shrinks (see seatEvents): one more frame here cost 8 KB a stream.
func (s *Server) admit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r = s.admitted(w, r); r != nil {
			next.ServeHTTP(w, r)
		}
	})
}

// admitted is admit's work out of line: r as the routes get it, or nil when it was answered.
//
//go:noinline
func (s *Server) admitted(w http.ResponseWriter, r *http.Request) *http.Request {
	setReadDeadline(w, r, s.deps.RequestBodyTimeout)
	if !textRequest(r) {
		s.fail(w, r, errNotText)
		return nil
	}
	if wantsSession(r) {
		return s.sessionOf(w, r)
	}
	return r
}

// OpsHandler serves health, operations and metrics on the internal port (OPS_ADDR), where
// Prometheus and operators read them without signing in.
func (s *Server) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", staticFiles()) // the operations page's stylesheet and scripts
	trusted := func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { next(w, r.WithContext(asStaff(r.Context()))) }
	}
	s.operations(mux, trusted, trusted)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.fail(w, r, errNotFound) })
	return s.recoverPanics(s.secure(s.textOnly(mux)))
}

// operations adds health checks, the operations view and metrics to mux: the view and metrics
// behind staff, readiness for anyone through known (which tells staff apart).
func (s *Server) operations(mux *http.ServeMux, staff, known func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", known(s.readyz))
	mux.HandleFunc("GET /metrics", staff(s.metrics.handler().ServeHTTP))
	mux.HandleFunc("GET /ops", staff(s.opsPage))
	mux.HandleFunc("GET /ops/events", staff(s.limitStreams(streamsOfOps, s.opsEvents)))
	mux.HandleFunc("GET /api/ops", staff(s.apiOps))
}

// staticFiles serves the embedded files, and no listing of them: a folder is not found.
func staticFiles() http.Handler {
	files := http.StripPrefix("/static/", cacheForever(http.FileServerFS(static.FS)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// readyz says whether the database and the broker answer. Anonymous callers (a load balancer)
// learn only that; staff also read why not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "kafka": "ok"}
	status := http.StatusOK
	for part, check := range map[string]func(context.Context) error{"database": s.deps.DB.PingContext, "kafka": s.deps.KafkaReady} {
		if err := check(ctx); err != nil {
			s.log.Debug("not ready", "part", part, "err", err) // anyone may ask, as often as they like
			checks[part], status = "unavailable", http.StatusServiceUnavailable
			if isStaff(r.Context()) {
				checks[part] = err.Error()
			}
		}
	}
	writeJSON(w, status, checks)
}

// errNotFound answers any unknown page or resource.
var errNotFound = errors.New("not found")

// errBadRequest wraps a request that could not even be read.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

// fail is the one place where an error becomes an HTTP status and a message for people: JSON
// under /api/, a page everywhere else.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, message := http.StatusInternalServerError, "internal", "Something went wrong on our side. Please try again."
	field := ""
	var validation *ValidationError
	var bad *badRequestError
	var limited *rateLimitedError
	var doorLimited *doorLimitedError
	var streams *tooManyStreamsError
	switch {
	case errors.As(err, &validation):
		status, code = http.StatusUnprocessableEntity, "invalid_"+firstField(validation)
		field, message = validation.First()
	case errors.As(err, &bad):
		status, code, message = http.StatusBadRequest, "bad_request", bad.msg
	case errors.Is(err, errNotFound), errors.Is(err, ErrBookingNotFound), errors.Is(err, catalog.ErrNotFound):
		status, code, message = http.StatusNotFound, "not_found", "We could not find that page. It may have moved, or the link may be wrong."
	case errors.Is(err, errCSRF):
		status, code, message = http.StatusForbidden, "form_expired", "This form has expired or did not come from this site. Reload the page and try again: nothing was booked or changed."
	case errors.Is(err, errStaffOnly):
		status, code, message = http.StatusForbidden, "staff_only", "This is for the cinema's staff: sign in at /tickets/door first, or send the door key as Authorization: Bearer <key>."
	case errors.Is(err, errCrossOrigin):
		status, code, message = http.StatusForbidden, "cross_origin", "This request came from another site's page, so it was refused. Book from this site's own pages."
	case errors.As(err, &limited):
		status, code, message = http.StatusTooManyRequests, "rate_limited", "Too many booking requests from your address. Please wait a moment and try again."
		w.Header().Set("Retry-After", retryAfterSeconds(limited.retryAfter))
	case errors.As(err, &doorLimited):
		status, code, message = http.StatusTooManyRequests, "door_rate_limited", "Too many wrong door keys from your address. Wait a few minutes, then sign in to the door again with the right key."
		w.Header().Set("Retry-After", retryAfterSeconds(doorLimited.retryAfter))
	case errors.As(err, &streams) && streams.perAddress:
		status, code, message = http.StatusTooManyRequests, "too_many_streams", "Too many live-update streams are open from your address. Close some of this site's tabs, then reload this page."
		w.Header().Set("Retry-After", "10")
	case errors.As(err, &streams):
		status, code, message = http.StatusServiceUnavailable, "streams_full", "The site is sending live updates to as many pages as it can. Please reload this page in a moment."
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, errBodyTimeout):
		status, code, message = http.StatusRequestTimeout, "request_timeout", "Your request took too long to arrive. Nothing was booked or changed: please try again."
	case errors.Is(err, errBusy):
		status, code, message = http.StatusServiceUnavailable, "busy", busyMessage
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, errUnavailable):
		status, code, message = http.StatusServiceUnavailable, "unavailable", "Booking is briefly unavailable. Nothing was booked or charged: please try again in a moment."
		w.Header().Set("Retry-After", "5")
	}
	if status == http.StatusInternalServerError && r.Context().Err() != nil {
		// The client left mid-request (its statement was cancelled with it): nobody reads the
		// answer, and nothing of ours failed.
		status, code, message = 499, "client_closed_request", "The request was cancelled."
		s.log.Debug("request cancelled by its client", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status >= 500 && code != "streams_full" { // a full house is no failure of ours
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if isAPI(r) {
		body := map[string]any{"error": code, "message": message}
		if field != "" {
			body["message"] = field + ": " + message
			body["field"] = field
			body["fields"] = validation.Fields
		}
		writeJSON(w, status, body)
		return
	}
	s.render(w, r, status, templates.ErrorView(templates.ErrorPage{Status: status, Title: http.StatusText(status), Message: message}))
}

func firstField(v *ValidationError) string {
	f, _ := v.First()
	return f
}

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	ctx := templates.WithSandboxInbox(r.Context(), s.deps.SMSInbox != nil)
	if err := c.Render(ctx, w); err != nil {
		s.log.Warn("render page", "path", r.URL.Path, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", v)
				s.fail(w, r, errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func cacheForever(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The vendored files carry their version in their name; the stylesheet does not.
		if strings.HasSuffix(r.URL.Path, ".js") {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		next.ServeHTTP(w, r)
	})
}
