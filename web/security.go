package web

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/a-h/templ"
)

// errCrossOrigin is a state-changing request sent by another site's page.
var errCrossOrigin = errors.New("cross-origin request")

// rateLimitedError says a client sent more booking requests than BOOKING_RATE_LIMIT allows.
type rateLimitedError struct{ retryAfter time.Duration }

func (e *rateLimitedError) Error() string { return "too many booking requests" }

// secure wraps every route: cross-site request forgery is refused (Go's CrossOriginProtection
// reads Sec-Fetch-Site and Origin, so scripts and curl, which send neither, are unaffected), and
// every answer carries a strict Content-Security-Policy with a fresh nonce (no inline script or
// style runs without it) and the usual hardening headers.
func (s *Server) secure(next http.Handler) http.Handler {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.fail(w, r, errCrossOrigin) }))
	guarded := csrf.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		guarded.ServeHTTP(w, secured(w, r))
	})
}

// secured sets the answer's security headers and gives r the nonce its scripts carry. Out of
// line, to keep the frames an event stream waits under lean (see admit).
//
//go:noinline
func secured(w http.ResponseWriter, r *http.Request) *http.Request {
	nonce := newNonce()
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'nonce-"+nonce+"' 'strict-dynamic'; "+
		"style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "+
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	if private(r) {
		// A booking's pages carry its secret and the buyer's name: no shared or back-button
		// cache keeps them.
		h.Set("Cache-Control", "no-store")
	}
	return r.WithContext(templ.WithNonce(r.Context(), nonce))
}

func newNonce() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// private is a request whose answer is one person's business: anything carrying a capability
// token, their bookings, and the door's ticket checks.
func private(r *http.Request) bool {
	if r.URL.Query().Has("token") {
		return true
	}
	for _, prefix := range []string{"/bookings", "/api/bookings", "/tickets/", "/api/tickets/"} {
		if strings.HasPrefix(r.URL.Path, prefix) {
			return true
		}
	}
	return false
}

// rateLimiter allows each client perMinute booking requests a minute, with bursts up to the same
// number: a token bucket per key (an address, a browser session), forgotten once full again.
type rateLimiter struct {
	perMinute int
	now       func() time.Time
	mu        sync.Mutex
	buckets   map[string]*bucket
	swept     time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(perMinute int, now func() time.Time) *rateLimiter {
	return &rateLimiter{perMinute: perMinute, now: now, buckets: map[string]*bucket{}}
}

// allow takes a token from every key's bucket, or from none and says how long until each has
// one: a request refused for one key does not use up the others.
func (l *rateLimiter) allow(keys ...string) (bool, time.Duration) {
	if l == nil || l.perMinute <= 0 {
		return true, 0
	}
	now := l.now()
	rate := float64(l.perMinute) / 60 // tokens a second
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute { // full buckets carry no information: drop them
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.at).Seconds()*rate >= float64(l.perMinute) {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	var wait time.Duration
	buckets := make([]*bucket, 0, len(keys))
	for _, key := range keys {
		b, ok := l.buckets[key]
		if !ok {
			b = &bucket{tokens: float64(l.perMinute), at: now}
			l.buckets[key] = b
		}
		b.tokens = math.Min(float64(l.perMinute), b.tokens+now.Sub(b.at).Seconds()*rate)
		b.at = now
		if b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)/rate*float64(time.Second)))
		}
		buckets = append(buckets, b)
	}
	if wait > 0 {
		return false, wait
	}
	for _, b := range buckets {
		b.tokens--
	}
	return true, 0
}

// peek says how many tokens key's bucket holds now, without taking one, and how long until it
// holds one.
func (l *rateLimiter) peek(key string) (float64, time.Duration) {
	if l == nil || l.perMinute <= 0 {
		return math.Inf(1), 0
	}
	rate := float64(l.perMinute) / 60
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return float64(l.perMinute), 0
	}
	tokens := math.Min(float64(l.perMinute), b.tokens+l.now().Sub(b.at).Seconds()*rate)
	if tokens >= 1 {
		return tokens, 0
	}
	return tokens, time.Duration((1 - tokens) / rate * float64(time.Second))
}

// refund gives back the token allow took from each key: an attempt that turned out not to count.
func (l *rateLimiter) refund(keys ...string) {
	if l == nil || l.perMinute <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, key := range keys {
		if b, ok := l.buckets[key]; ok {
			b.tokens = math.Min(float64(l.perMinute), b.tokens+1)
		}
	}
}

// limitBookings answers 429 with Retry-After when the client is over its booking rate: per
// address, and per browser session when there is one (a phone that changes networks keeps its
// session, and its limit).
func (s *Server) limitBookings(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		keys := []string{"addr:" + clientAddress(r, s.deps.TrustedProxies)}
		if c, err := r.Cookie(sessionCookie); err == nil && sessionPattern.MatchString(c.Value) {
			keys = append(keys, "session:"+c.Value)
		}
		if ok, wait := s.limiter.allow(keys...); !ok {
			s.fail(w, r, &rateLimitedError{retryAfter: wait})
			return
		}
		next(w, r)
	}
}

// clientAddress is who a request comes from, for rate limits: its IPv4 address, or the /64 an
// IPv6 address belongs to (one household or phone is given a whole /64, and could otherwise
// take a fresh address for every request). Behind proxies the operator trusts
// (TRUSTED_PROXIES), it is the nearest address in X-Forwarded-For that is not one of them: the
// proxies' own address would put every visitor in one bucket, and anything further left could
// have been written by the client.
func clientAddress(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if isTrusted(addr, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop, err := parseHop(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: stop at the last address we could trust
			}
			addr = hop.Unmap()
			if !isTrusted(addr, trusted) {
				break
			}
		}
	}
	if addr.Is6() {
		prefix, _ := addr.Prefix(64)
		return prefix.String()
	}
	return addr.String()
}

// parseHop reads one X-Forwarded-For entry: an address, or an address with a port as some
// proxies write it ("198.51.100.7:4711", "[2001:db8::1]:443").
func parseHop(hop string) (netip.Addr, error) {
	if addr, err := netip.ParseAddr(hop); err == nil {
		return addr, nil
	}
	ap, err := netip.ParseAddrPort(hop)
	return ap.Addr(), err
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(int(math.Ceil(d.Seconds())), 1))
}

// errNotText is a request whose path or query holds a NUL or bytes that are not UTF-8: nothing we
// serve is named that way, and PostgreSQL would refuse such a string with an error of ours.
var errNotText = &badRequestError{"The address holds bytes that are not text (a NUL or invalid UTF-8): check the link."}

// textOnly refuses, before any route sees it, a request whose path or query is not text. Ids and
// query values go to PostgreSQL, which stores neither NUL nor invalid UTF-8.
func (s *Server) textOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !textRequest(r) {
			s.fail(w, r, errNotText)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// textRequest: the request's path and decoded query are text. A query is decoded only when it
// holds an escape: otherwise its values are pieces of the raw query. Never inlined: an event
// stream's goroutine waits, for hours maybe, under every middleware's frame, and a lean stack
// is what lets it shrink (see seatEvents).
//
//go:noinline
func textRequest(r *http.Request) bool {
	if !isText(r.URL.Path) || !isText(r.URL.RawQuery) {
		return false
	}
	if !strings.Contains(r.URL.RawQuery, "%") {
		return true
	}
	for k, vs := range r.URL.Query() {
		if !isText(k) {
			return false
		}
		for _, v := range vs {
			if !isText(v) {
				return false
			}
		}
	}
	return true
}

// isText: valid UTF-8 without NUL.
func isText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
