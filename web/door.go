package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/boxoffice/boxoffice/templates"
)

// Anyone may check a ticket's code (the holder sees no more than their own ticket shows), but
// only door staff may admit one: otherwise whoever saw a photo of a ticket could use it up from
// home. Staff sign in once on the door's device with the door key (DOOR_KEY, or the one the web
// made and printed once at start-up, and by `boxoffice door-key`), which opens a session on the
// server for a working day; signing out ends it there. Scripts send the key as a bearer token.
//
// Only wrong keys count against the limits, so strangers guessing cannot lock the staff out: an
// address gets five wrong keys a minute, and while the whole site sees more than sixty a minute,
// an address that guessed wrong in the last ten minutes is not heard at all; an address that
// has not guessed wrong is always heard.

const doorCookie = "boxoffice_door"

const doorStaffOnlyMessage = "Only door staff can admit tickets: sign in at /tickets/door with the door key. Nothing was admitted."

// doorSessionAge is how long a device stays signed in as door staff: a working day.
const doorSessionAge = 12 * time.Hour

// doorLimitedError is a client that guessed the door key wrong too often.
type doorLimitedError struct{ retryAfter time.Duration }

func (e *doorLimitedError) Error() string { return "too many wrong door keys" }

// doorGuessLimits bound wrong door keys: a few a minute from one address, and a level for the
// whole site above which an address that guessed wrong lately is not heard. They hold even with
// BOOKING_RATE_LIMIT=0.
type doorGuessLimits struct {
	perAddress, site *rateLimiter
	now              func() time.Time
	mu               sync.Mutex
	lastWrong        map[string]time.Time // address → its last wrong key, for doorAttackWait
}

// doorAttackWait is how long an address that guessed wrong is not heard while the site is over
// its level: across a dozen addresses, five guesses a minute each would still be sixty.
const doorAttackWait = 10 * time.Minute

func newDoorGuessLimits(now func() time.Time) *doorGuessLimits {
	return &doorGuessLimits{perAddress: newRateLimiter(5, now), site: newRateLimiter(60, now), now: now,
		lastWrong: map[string]time.Time{}}
}

// try takes a guess's place from addr's allowance before the key is compared (so guesses sent
// at once are counted at once), or says how long the address must wait.
func (d *doorGuessLimits) try(addr string) (bool, time.Duration) {
	if tokens, _ := d.site.peek("site"); tokens < 1 {
		d.mu.Lock()
		last, guessed := d.lastWrong[addr]
		d.mu.Unlock()
		if wait := doorAttackWait - d.now().Sub(last); guessed && wait > 0 {
			return false, wait
		}
	}
	return d.perAddress.allow(addr)
}

// right gives back the place a right key took: only wrong keys count.
func (d *doorGuessLimits) right(addr string) { d.perAddress.refund(addr) }

// wrong counts a wrong key from addr for the whole site too.
func (d *doorGuessLimits) wrong(addr string) {
	d.site.allow("site")
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.lastWrong) >= 10_000 { // addresses that guessed long ago carry no information
		for a, at := range d.lastWrong {
			if now.Sub(at) > doorAttackWait {
				delete(d.lastWrong, a)
			}
		}
	}
	d.lastWrong[addr] = now
}

// doorKeyMatches compares a given key with the door key by their SHA-256 digests, so the
// comparison takes the same time whatever the given key's length.
func (s *Server) doorKeyMatches(r *http.Request, given string) (ok bool, limited error) {
	addr := clientAddress(r, s.deps.TrustedProxies)
	if allowed, wait := s.doorGuesses.try(addr); !allowed {
		return false, &doorLimitedError{retryAfter: wait}
	}
	want, got := sha256.Sum256([]byte(s.deps.DoorKey)), sha256.Sum256([]byte(given))
	if s.deps.DoorKey != "" && hmac.Equal(want[:], got[:]) {
		s.doorGuesses.right(addr)
		return true, nil
	}
	s.doorGuesses.wrong(addr)
	return false, nil
}

// doorKeyMAC names the door key in a session row without storing it: a new key matches no row.
func (s *Server) doorKeyMAC() []byte {
	mac := hmac.New(sha256.New, s.capabilityKey)
	mac.Write([]byte("door:" + s.deps.DoorKey))
	return mac.Sum(nil)
}

// openDoorSession records a new signed-in device and returns its cookie's value.
func (s *Server) openDoorSession(ctx context.Context) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	hash := sha256.Sum256([]byte(token))
	now := s.deps.Now()
	// Ended days are swept here, where a session starts: the table stays as small as the staff.
	_, err := s.deps.DB.ExecContext(ctx, `WITH swept AS (DELETE FROM web.door_sessions WHERE expires_at < $4)
		INSERT INTO web.door_sessions (token_hash, key_mac, expires_at) VALUES ($1, $2, $3)`,
		hash[:], s.doorKeyMAC(), now.Add(doorSessionAge), now)
	if err != nil {
		return "", fmt.Errorf("open door session: %w", err)
	}
	return token, nil
}

// isDoorStaff: the request carries the cookie of a door session that is open on the server, for
// today's door key, and not older than a day's work.
func (s *Server) isDoorStaff(r *http.Request) (bool, error) {
	if s.deps.DoorKey == "" {
		return false, nil
	}
	c, err := r.Cookie(doorCookie)
	if err != nil || len(c.Value) != 43 {
		return false, nil
	}
	hash := sha256.Sum256([]byte(c.Value))
	var open bool
	err = s.deps.DB.GetContext(r.Context(), &open, `SELECT EXISTS (SELECT 1 FROM web.door_sessions
		WHERE token_hash = $1 AND key_mac = $2 AND expires_at > $3)`, hash[:], s.doorKeyMAC(), s.deps.Now())
	if err != nil {
		return false, fmt.Errorf("read door session: %w", err)
	}
	return open, nil
}

// bearerIsDoorStaff: a script's Authorization: Bearer <door key>.
func (s *Server) bearerIsDoorStaff(r *http.Request) (bool, error) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false, nil
	}
	return s.doorKeyMatches(r, bearer)
}

// doorSignInPage asks for the door key.
func (s *Server) doorSignInPage(w http.ResponseWriter, r *http.Request) {
	staff, err := s.isDoorStaff(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, templates.DoorSignInView(templates.DoorSignIn{SignedIn: staff}))
}

// doorSignIn checks the door key and signs this device in for a working day.
func (s *Server) doorSignIn(w http.ResponseWriter, r *http.Request) {
	ok, limited := s.doorKeyMatches(r, strings.TrimSpace(r.PostForm.Get("door_key")))
	if limited != nil {
		s.fail(w, r, limited)
		return
	}
	if !ok {
		s.render(w, r, http.StatusForbidden, templates.DoorSignInView(templates.DoorSignIn{
			Error: "That is not the door key. Ask the cinema's manager for it."}))
		return
	}
	token, err := s.openDoorSession(r.Context())
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %w", errUnavailable, err))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: doorCookie, Value: token, Path: "/", MaxAge: int(doorSessionAge.Seconds()),
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/tickets/verify", http.StatusSeeOther)
}

// doorSignOut ends this device's door session, on the server as well as in the browser.
func (s *Server) doorSignOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(doorCookie); err == nil {
		hash := sha256.Sum256([]byte(c.Value))
		if _, err := s.deps.DB.ExecContext(r.Context(), `DELETE FROM web.door_sessions WHERE token_hash = $1`, hash[:]); err != nil {
			s.fail(w, r, fmt.Errorf("%w: end door session: %w", errUnavailable, err))
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: doorCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/tickets/door", http.StatusSeeOther)
}

// errStaffOnly is an anonymous request for what only staff may see.
var errStaffOnly = errors.New("staff only")

type staffKey struct{}

// asStaff marks a request as made by staff, for the handlers behind staffOnly.
func asStaff(ctx context.Context) context.Context { return context.WithValue(ctx, staffKey{}, true) }

// isStaff: staffOnly (or the internal port) let this request through as staff.
func isStaff(ctx context.Context) bool { v, _ := ctx.Value(staffKey{}).(bool); return v }

// staffOnly lets through a signed-in door device or a script with the door key as a bearer
// token, marked as staff; anyone else is refused.
func (s *Server) staffOnly(next http.HandlerFunc) http.HandlerFunc {
	return s.staffKnown(func(w http.ResponseWriter, r *http.Request) {
		if !isStaff(r.Context()) {
			s.fail(w, r, errStaffOnly)
			return
		}
		next(w, r)
	})
}

// staffKnown lets everyone through, marking staff as staff.
func (s *Server) staffKnown(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		staff, err := s.isDoorStaff(r)
		if err == nil && !staff && r.Header.Get("Authorization") != "" {
			staff, err = s.bearerIsDoorStaff(r)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if staff {
			r = r.WithContext(asStaff(r.Context()))
		}
		next(w, r)
	}
}
