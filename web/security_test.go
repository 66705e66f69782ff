package web

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
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

// TestClientAddressBehindTrustedProxies: behind the proxies the operator names, a request is
// limited by the visitor's address they forward, never by a hop the visitor could have written;
// from anywhere else X-Forwarded-For is ignored.
func TestClientAddressBehindTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.10/32")}
	for _, tc := range []struct{ remote, forwarded, want string }{
		{"10.1.2.3:443", "198.51.100.7", "198.51.100.7"},
		{"10.1.2.3:443", "203.0.113.66, 198.51.100.7, 10.9.9.9", "198.51.100.7"}, // the visitor wrote the first hop
		{"192.0.2.10:80", "2001:db8:1:2::99", "2001:db8:1:2::/64"},
		{"10.1.2.3:443", "", "10.1.2.3"},                          // a proxy's own request
		{"10.1.2.3:443", "not-an-address", "10.1.2.3"},            // a hop we cannot read ends the walk
		{"198.51.100.7:5000", "203.0.113.1", "198.51.100.7"},      // not a trusted proxy: the header is ignored
		{"[::ffff:10.1.2.3]:443", "198.51.100.8", "198.51.100.8"}, // IPv4-mapped proxy address
		{"10.1.2.3:443", "198.51.100.9:4711", "198.51.100.9"},     // a hop written with its port
		{"10.1.2.3:443", "[2001:db8:5:6::1]:443", "2001:db8:5:6::/64"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/api/bookings", nil)
		r.RemoteAddr = tc.remote
		if tc.forwarded != "" {
			r.Header.Set("X-Forwarded-For", tc.forwarded)
		}
		if got := clientAddress(r, trusted); got != tc.want {
			t.Errorf("from %s forwarding %q: %s, want %s", tc.remote, tc.forwarded, got, tc.want)
		}
	}
}

// TestDoorSessionLastsAWorkingDay: a door session is open on the server for twelve hours from
// sign-in (a copied cookie does not work for ever), signing out ends it on the server (the old
// cookie no longer admits), a new door key ends every session, and a made-up cookie is nobody.
func TestDoorSessionLastsAWorkingDay(t *testing.T) {
	clock := &testClock{at: time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)}
	s, _ := newTestServer(t, clock, nil)
	morning := doorCookieOf(t, signInAtDoor(s, "192.0.2.1:5000", "the-door-key-of-today"))
	clock.add(time.Hour)
	if !doorStaffWith(t, s, morning) {
		t.Fatal("a door session an hour old was refused")
	}
	if doorStaffWith(t, s, strings.Repeat("A", 43)) {
		t.Error("a made-up door cookie was accepted")
	}

	evening := doorCookieOf(t, signInAtDoor(s, "192.0.2.1:5000", "the-door-key-of-today"))
	r := httptest.NewRequest(http.MethodPost, "/tickets/door/sign-out", nil)
	r.AddCookie(&http.Cookie{Name: doorCookie, Value: evening})
	w := httptest.NewRecorder()
	s.doorSignOut(w, r)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", w.Code)
	}
	if doorStaffWith(t, s, evening) {
		t.Error("a door cookie kept from before signing out still admits")
	}
	if !doorStaffWith(t, s, morning) {
		t.Error("signing out one device ended another's session")
	}

	clock.add(12 * time.Hour)
	if doorStaffWith(t, s, morning) {
		t.Error("a door session thirteen hours old was accepted")
	}
	fresh := doorCookieOf(t, signInAtDoor(s, "192.0.2.1:5000", "the-door-key-of-today"))
	s.deps.DoorKey = "a-new-door-key-for-tomorrow"
	if doorStaffWith(t, s, fresh) {
		t.Error("a door session survived a new door key")
	}
}

// TestStrangersCannotLockTheDoorStaffOut: forty addresses guessing wrong keys every three
// seconds for four minutes, far past the site's level, never stop the right key from an address
// that has not guessed; each address is held to five a minute, and while the site is over its
// level an address that guessed wrong is not heard, so the whole site compares about sixty wrong
// keys a minute, not the 800 the addresses' own limits would let through; and the refusal names
// the door.
func TestStrangersCannotLockTheDoorStaffOut(t *testing.T) {
	clock := &testClock{at: time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)}
	s, _ := newTestServer(t, clock, nil)
	const addresses, minutes, every = 40, 4, 3 * time.Second
	compared := 0
	for round := range int(minutes * time.Minute / every) {
		for i := range addresses {
			w := signInAtDoor(s, fmt.Sprintf("203.0.113.%d:4000", i+1), fmt.Sprintf("guess-%d-%d", round, i))
			switch w.Code {
			case http.StatusTooManyRequests:
				if !strings.Contains(w.Body.String(), "door keys") || w.Header().Get("Retry-After") == "" {
					t.Fatalf("a limited guess: %s (Retry-After %q), want the door named and a wait", w.Body, w.Header().Get("Retry-After"))
				}
			case http.StatusForbidden:
				compared++
			default:
				t.Fatalf("a wrong key answered %d", w.Code)
			}
		}
		if round%10 == 0 {
			if w := signInAtDoor(s, fmt.Sprintf("198.51.100.%d:443", round/10+1), "the-door-key-of-today"); w.Code != http.StatusSeeOther {
				t.Fatalf("round %d of guessing: the right key from the door answered %d, want signed in", round, w.Code)
			}
		}
		clock.add(every)
	}
	// The site's sixty a minute, its first sixty, and each address's first guess.
	if limit := 60*minutes + 60 + addresses; compared > limit {
		t.Errorf("%d wrong keys compared in %d minutes from %d addresses, want at most %d", compared, minutes, addresses, limit)
	}
	// Once the site is calm again, the door's own device signs in after one mistyped key.
	clock.add(doorAttackWait)
	if w := signInAtDoor(s, "198.51.100.50:443", "the-door-key-of-todya"); w.Code != http.StatusForbidden {
		t.Fatalf("a mistyped key: %d", w.Code)
	}
	if w := signInAtDoor(s, "198.51.100.50:443", "the-door-key-of-today"); w.Code != http.StatusSeeOther {
		t.Fatalf("the right key after a mistyped one: %d, want signed in", w.Code)
	}
}

// TestWrongDoorKeysSentAtOnceAreCountedAtOnce: fifty wrong keys sent together from one address
// are compared five times; the rest wait.
func TestWrongDoorKeysSentAtOnceAreCountedAtOnce(t *testing.T) {
	clock := &testClock{at: time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)}
	s, _ := newTestServer(t, clock, nil)
	var wg sync.WaitGroup
	var compared, limited atomic.Int64
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch w := signInAtDoor(s, "203.0.113.9:4000", fmt.Sprintf("guess-%d", i)); w.Code {
			case http.StatusForbidden:
				compared.Add(1)
			case http.StatusTooManyRequests:
				limited.Add(1)
			default:
				t.Errorf("a wrong key answered %d", w.Code)
			}
		}()
	}
	wg.Wait()
	if compared.Load() != 5 || limited.Load() != 45 {
		t.Errorf("50 wrong keys at once: %d compared, %d limited; want 5 and 45", compared.Load(), limited.Load())
	}
}
