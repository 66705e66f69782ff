package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/notification/sms"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}

// newTestServer is the whole web on a migrated and seeded database of its own, with the
// sandboxes, and no Kafka: nothing here runs the relay, so nothing is published. change adjusts
// its Deps.
func newTestServer(tb testing.TB, clock *testClock, change func(*Deps)) (*Server, *sqlx.DB) {
	tb.Helper()
	conn := dbtest.NewMigrated(tb, func(ctx context.Context, d *sqlx.DB) error { return catalog.Seed(ctx, d, clock.now(), false) })
	d := Deps{
		DB: conn, Tokenizer: gateway.NewSandbox(conn), SMSInbox: sms.NewSandbox(conn, clock.now),
		KafkaReady:    func(context.Context) error { return nil },
		CapabilityKey: testKey, DoorKey: "the-door-key-of-today", Now: clock.now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if change != nil {
		change(&d)
	}
	return NewServer(d), conn
}

// signInAtDoor posts a door key from addr as the sign-in form does, past the form-token check.
func signInAtDoor(s *Server, addr, key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/tickets/door", strings.NewReader(url.Values{"door_key": {key}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = addr
	_ = r.ParseForm()
	w := httptest.NewRecorder()
	s.doorSignIn(w, r)
	return w
}

// doorStaffWith asks whether a request with this door cookie is door staff.
func doorStaffWith(tb testing.TB, s *Server, cookie string) bool {
	tb.Helper()
	r := httptest.NewRequest(http.MethodGet, "/tickets/verify", nil)
	r.AddCookie(&http.Cookie{Name: doorCookie, Value: cookie})
	staff, err := s.isDoorStaff(r)
	if err != nil {
		tb.Fatal(err)
	}
	return staff
}

func doorCookieOf(tb testing.TB, w *httptest.ResponseRecorder) string {
	tb.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == doorCookie && c.Value != "" {
			return c.Value
		}
	}
	tb.Fatalf("signing in at the door answered %d with no door cookie", w.Code)
	return ""
}

// TestReadinessSaysWhyOnlyToStaff: a part that is down makes /readyz answer 503 to everyone, but
// only staff, or the internal port, read the error, which names internal addresses.
func TestReadinessSaysWhyOnlyToStaff(t *testing.T) {
	clock := &testClock{at: time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)}
	s, _ := newTestServer(t, clock, func(d *Deps) {
		d.KafkaReady = func(context.Context) error { return errors.New("dial tcp 10.0.4.7:9092: connection refused") }
	})
	get := func(h http.Handler, bearer string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/readyz", nil)
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := get(s.Handler(), ""); w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "10.0.4.7") || !strings.Contains(w.Body.String(), `"kafka":"unavailable"`) {
		t.Errorf("anonymous /readyz: %d %s, want 503 saying kafka is unavailable, without the error", w.Code, w.Body)
	}
	for name, w := range map[string]*httptest.ResponseRecorder{
		"staff": get(s.Handler(), "the-door-key-of-today"), "the internal port": get(s.OpsHandler(), ""),
	} {
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "10.0.4.7") {
			t.Errorf("/readyz for %s: %d %s, want 503 with the error", name, w.Code, w.Body)
		}
	}
}

// TestAClientThatLeavesIsNoFailureOfOurs: a request whose client has gone while its statement
// ran is answered without a 5xx and logs no error: nothing of ours failed.
func TestAClientThatLeavesIsNoFailureOfOurs(t *testing.T) {
	var logged atomic.Int64
	clock := &testClock{at: time.Now()}
	s, _ := newTestServer(t, clock, func(d *Deps) { d.Log = slog.New(errorsLogged{Handler: slog.DiscardHandler, n: &logged}) })
	for _, path := range []string{"/", "/movies/orbital-decay", "/api/movies", "/bookings"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil))
		if w.Code >= 500 || logged.Load() != 0 {
			t.Errorf("GET %s from a client that left: %d, %d errors logged; want no 5xx and no error", path, w.Code, logged.Load())
		}
	}
}
