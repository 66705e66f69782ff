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
	"time"

	"github.com/boxoffice/boxoffice/templates"
)

// Anyone may check a ticket's code (the holder sees no more than their own ticket shows), but
// only door staff may admit one: otherwise whoever saw a photo of a ticket could use it up from
// home. Staff sign in once on the door's device with the door key (DOOR_KEY, or the one the web
// made and printed once at start-up, and by `boxoffice door-key`), which opens a session on the
// server for a working day; signing out ends it there. Scripts send the key as a bearer token.
//
// Only wrong keys count against the limits, and the right key is always compared, so strangers
// guessing cannot lock the staff out: an address gets a few wrong keys a minute, and while the
// whole site sees more wrong keys than a door ever would, an address that has guessed wrong
// once must wait before guessing again.

const doorCookie = "boxoffice_door"

const doorStaffOnlyMessage = "Only door staff can admit tickets: sign in at /tickets/door with the door key. Nothing was admitted."

// doorSessionAge is how long a device stays signed in as door staff: a working day.
const doorSessionAge = 12 * time.Hour

// doorLimitedError is a client that guessed the door key wrong too often.
type doorLimitedError struct{ retryAfter time.Duration }

func (e *doorLimitedError) Error() string { return "too many wrong door keys" }

// doorGuessLimits bound wrong door keys: a few a minute from one address, and a level for the
// whole site above which an address with a wrong key this minute may not try again. They hold
// even with BOOKING_RATE_LIMIT=0.
type doorGuessLimits struct {
	perAddress, site *rateLimiter
}

func newDoorGuessLimits(now func() time.Time) doorGuessLimits {
	return doorGuessLimits{perAddress: newRateLimiter(5, now), site: newRateLimiter(60, now)}
}

// mayTry says whether a key from addr is compared at all, or how long the address must wait.
func (d doorGuessLimits) mayTry(addr string) (bool, time.Duration) {
	tokens, wait := d.perAddress.peek(addr)
	if tokens < 1 {
		return false, wait
	}
	if siteTokens, siteWait := d.site.peek("site"); siteTokens < 1 && tokens < float64(d.perAddress.perMinute) {
		return false, max(siteWait, time.Second)
	}
	return true, 0
}

// failed counts a wrong key from addr.
func (d doorGuessLimits) failed(addr string) {
	d.perAddress.allow(addr)
	d.site.allow("site")
}

// doorKeyMatches compares a given key with the door key by their SHA-256 digests, so the
// comparison takes the same time whatever the given key's length.
func (s *Server) doorKeyMatches(r *http.Request, given string) (ok bool, limited error) {
	addr := clientAddress(r, s.deps.TrustedProxies)
	if allowed, wait := s.doorGuesses.mayTry(addr); !allowed {
		return false, &doorLimitedError{retryAfter: wait}
	}
	want, got := sha256.Sum256([]byte(s.deps.DoorKey)), sha256.Sum256([]byte(given))
	if s.deps.DoorKey != "" && hmac.Equal(want[:], got[:]) {
		return true, nil
	}
	s.doorGuesses.failed(addr)
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
