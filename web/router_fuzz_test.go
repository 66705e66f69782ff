package web

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// routeShapes are the paths of every route, with {id} where the visitor chooses.
var routeShapes = []string{
	"/", "/movies/{id}", "/shows/{id}", "/shows/{id}/seats/events", "/shows/{id}/summary", "/bookings",
	"/bookings/{id}", "/bookings/{id}/events", "/bookings/{id}/hold", "/bookings/{id}/ticket", "/tickets/verify",
	"/tickets/door", "/tickets/door/sign-out", "/dev/sms", "/api/dev/sms", "/api/movies", "/api/shows",
	"/api/shows/{id}/seats", "/api/bookings", "/api/bookings/{id}", "/api/bookings/{id}/events",
	"/api/tickets/verify", "/api/tickets/admit", "/api/tickets/{id}", "/healthz", "/readyz", "/metrics",
	"/ops", "/ops/events", "/api/ops", "/static/{id}", "/{id}",
}

var fuzzMethods = []string{"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"}

// errorsLogged counts the log records at ERROR: the web logs one only when a part of ours fails.
type errorsLogged struct {
	slog.Handler
	n *atomic.Int64
}

func (h errorsLogged) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	return nil
}

func (h errorsLogged) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h errorsLogged) WithGroup(string) slog.Handler      { return h }

// FuzzRouter: whatever a visitor sends to whichever route — method, path, query, one header of
// their choosing, body — the whole web (on a real database) answers it without a panic, without a
// 5xx and without logging an error: those mean one of our own parts failed.
func FuzzRouter(f *testing.F) {
	var logged atomic.Int64
	clock := &testClock{at: time.Now()}
	s, conn := newTestServer(f, clock, func(d *Deps) {
		d.Log = slog.New(errorsLogged{Handler: slog.DiscardHandler, n: &logged})
	})
	handler := s.Handler()
	var show, movie string
	if err := conn.QueryRow(`SELECT id, movie_id FROM catalog.shows WHERE starts_at > now() ORDER BY starts_at LIMIT 1`).Scan(&show, &movie); err != nil {
		f.Fatal(err)
	}
	booking := `{"show_id":"` + show + `","seats":["A1"],"name":"Ada","phone":"+447700900123","card_number":"4242424242424242"}`
	for i := range routeShapes {
		f.Add(uint8(0), uint8(i), show, "", "", "", []byte(nil))
		f.Add(uint8(1), uint8(i), "%00", "movie_id=%FF", "Content-Type", "application/json", []byte(booking))
	}
	f.Add(uint8(1), uint8(18), "", "", "Idempotency-Key", "\xff\xfe-not-text-key", []byte(booking))
	f.Add(uint8(1), uint8(18), "", "", "Content-Type", "application/json", []byte(strings.Replace(booking, "Ada", "Ada\u202e", 1)))
	f.Add(uint8(0), uint8(1), movie, "day=2026-13-45", "Cookie", "boxoffice_bookings=x.y~\xff; boxoffice_session=AAAAAAAAAAAAAAAAAAAAAA", []byte(nil))
	f.Add(uint8(1), uint8(12), "", "", "Cookie", "boxoffice_door=\x00", []byte("csrf_token=x"))
	f.Add(uint8(0), uint8(13), "", "phone=%2B447700900123&booking=%00&token=\xff", "Authorization", "Bearer \xff", []byte(nil))
	f.Fuzz(func(t *testing.T, method, route uint8, id, query, header, value string, body []byte) {
		path := strings.ReplaceAll(routeShapes[int(route)%len(routeShapes)], "{id}", id)
		target := path
		if query != "" {
			target += "?" + query
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || !strings.HasPrefix(target, "/") {
			return // net/http answers 400 itself before any handler runs
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond) // streams end
		defer cancel()
		r := httptest.NewRequestWithContext(ctx, fuzzMethods[int(method)%len(fuzzMethods)], "/", bytes.NewReader(body))
		r.URL, r.RequestURI = u, target
		r.RemoteAddr = "192.0.2.1:4000"
		if validHeader(header, value) {
			r.Header.Set(header, value)
		}
		before := logged.Load()
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s with %s: %q answered %d: %.300s", r.Method, target, header, value, w.Code, w.Body)
		}
		if logged.Load() != before {
			t.Fatalf("%s %s with %s: %q logged an error (answered %d)", r.Method, target, header, value, w.Code)
		}
	})
}

// validHeader is a header net/http would have read off the wire: a token for a name, and no
// control characters but tab in the value.
func validHeader(name, value string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	for _, c := range []byte(value) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
