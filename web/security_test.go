package web

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRateLimiterRefillsOverTheMinute: a client gets its burst, then one request per
// 60/perMinute seconds; other clients are not affected; 0 turns limiting off.
func TestRateLimiterRefillsOverTheMinute(t *testing.T) {
	now := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	l := newRateLimiter(3, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > 20*time.Second {
		t.Fatalf("fourth request: allowed=%v wait %v, want refused with a wait of up to 20 s", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Error("another client was limited by the first one's requests")
	}
	now = now.Add(wait)
	if ok, _ := l.allow("a"); !ok {
		t.Errorf("refused again after waiting the %v it was told", wait)
	}
	if ok, _ := l.allow("a"); ok {
		t.Error("two requests allowed for one token's wait")
	}
	off := newRateLimiter(0, func() time.Time { return now })
	for range 1000 {
		if ok, _ := off.allow("a"); !ok {
			t.Fatal("a limit of 0 refused a request")
		}
	}
}

// TestBookingLimitFollowsTheSessionAndTheAddress: a browser that changes address keeps its
// session's limit; addresses in one IPv6 /64 share one; a refusal for one key uses up no other.
func TestBookingLimitFollowsTheSessionAndTheAddress(t *testing.T) {
	now := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	s := &Server{limiter: newRateLimiter(2, func() time.Time { return now }), log: slog.New(slog.DiscardHandler)}
	booked := 0
	handler := s.limitBookings(func(w http.ResponseWriter, _ *http.Request) { booked++; w.WriteHeader(http.StatusAccepted) })
	book := func(addr, session string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/api/bookings", nil)
		r.RemoteAddr = addr
		if session != "" {
			r.AddCookie(&http.Cookie{Name: sessionCookie, Value: session})
		}
		w := httptest.NewRecorder()
		handler(w, r)
		return w
	}
	phone := "AAAAAAAAAAAAAAAAAAAAAA"
	for i, addr := range []string{"192.0.2.1:5000", "198.51.100.7:6000"} {
		if w := book(addr, phone); w.Code != http.StatusAccepted {
			t.Fatalf("request %d from the session: %d", i+1, w.Code)
		}
	}
	w := book("203.0.113.9:7000", phone)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third request of the session from a third address: %d (Retry-After %q), want 429 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	// That refusal took nothing from the third address: another browser there books twice.
	for i := range 2 {
		if w := book("203.0.113.9:7001", "BBBBBBBBBBBBBBBBBBBBBB"); w.Code != http.StatusAccepted {
			t.Fatalf("another browser at the third address, request %d: %d", i+1, w.Code)
		}
	}
	// Two addresses of one IPv6 /64 are one client; another /64 is not.
	book("[2001:db8:1:2::1]:443", "")
	book("[2001:db8:1:2::ffff]:443", "")
	if w := book("[2001:db8:1:2:aaaa::1]:443", ""); w.Code != http.StatusTooManyRequests {
		t.Errorf("a third address in the same /64: %d, want 429", w.Code)
	}
	if w := book("[2001:db8:1:3::1]:443", ""); w.Code != http.StatusAccepted {
		t.Errorf("an address in another /64: %d, want 202", w.Code)
	}
	if booked != 7 {
		t.Errorf("%d requests went through, want 7", booked)
	}
}

// TestCookiesAreSecureBehindATLSProxy: the session cookie is HttpOnly and SameSite=Lax always,
// Secure on a direct TLS connection, and Secure on plain HTTP when SECURE_COOKIES says a TLS
// proxy is in front.
func TestCookiesAreSecureBehindATLSProxy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		tls, behind bool
		want        bool
	}{
		{"plain http", false, false, false},
		{"direct tls", true, false, true},
		{"tls proxy in front", false, true, true},
	} {
		s := &Server{capabilityKey: testKey, deps: Deps{SecureCookies: tc.behind}}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.tls {
			r = httptest.NewRequest(http.MethodGet, "https://boxoffice.example/", nil)
		}
		w := httptest.NewRecorder()
		s.withSession(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(w, r)
		cookies := w.Result().Cookies()
		if len(cookies) != 1 || cookies[0].Name != sessionCookie {
			t.Fatalf("%s: cookies %v, want the session cookie", tc.name, cookies)
		}
		c := cookies[0]
		if c.Secure != tc.want || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Errorf("%s: Secure=%v HttpOnly=%v SameSite=%v, want Secure=%v, HttpOnly, Lax", tc.name, c.Secure, c.HttpOnly, c.SameSite, tc.want)
		}
	}
}
