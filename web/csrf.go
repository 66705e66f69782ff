package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/boxoffice/boxoffice/templates"
)

// Forms and htmx requests carry a token bound to the browser's session, besides the origin
// check (CrossOriginProtection): a page of another site cannot read it, so it cannot send it.
// The session is a random id in an HttpOnly, SameSite=Lax cookie; the token is an HMAC of it,
// put in every form as csrf_token and on <body> as htmx's X-CSRF-Token header.

const (
	sessionCookie = "boxoffice_session"
	csrfField     = "csrf_token"
	csrfHeader    = "X-CSRF-Token"
)

// errCSRF is a form or htmx request without its session's token.
var errCSRF = errors.New("missing or wrong form token")

var sessionPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func (s *Server) csrfFor(session string) string {
	mac := hmac.New(sha256.New, s.capabilityKey)
	mac.Write([]byte("csrf:" + session))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// secureCookies says whether a cookie set in answer to r may travel only over HTTPS.
func (s *Server) secureCookies(r *http.Request) bool { return r.TLS != nil || s.deps.SecureCookies }

// withSession gives every page a session (creating its cookie on the first visit) and puts the
// session's form token where templates render it.
func (s *Server) withSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wantsSession(r) {
			r = s.sessionOf(w, r)
		}
		next.ServeHTTP(w, r)
	})
}

// wantsSession: a page, which may hold a form; not the API, the static files or a stream.
func wantsSession(r *http.Request) bool {
	return !isAPI(r) && !strings.HasPrefix(r.URL.Path, "/static/") && !strings.HasSuffix(r.URL.Path, "/events")
}

// sessionOf is r with its session's form token, creating the session's cookie on the first
// visit. Out of line, so the frame an event stream waits under stays small (see textRequest).
//
//go:noinline
func (s *Server) sessionOf(w http.ResponseWriter, r *http.Request) *http.Request {
	session, ctx := "", r.Context()
	if c, err := r.Cookie(sessionCookie); err == nil && sessionPattern.MatchString(c.Value) {
		session = c.Value
	} else {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		session = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: session, Path: "/", HttpOnly: true,
			Secure: s.secureCookies(r), SameSite: http.SameSiteLaxMode})
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: session}) // for a POST on the very first visit
		ctx = context.WithValue(ctx, newSessionKey{}, true)
	}
	return r.WithContext(templates.WithCSRF(ctx, s.csrfFor(session)))
}

// newSessionKey marks a request whose session withSession has just made: it came without one.
type newSessionKey struct{}

// requireCSRF refuses a form or htmx POST whose token does not match the session's. A request
// that cannot pass (it brought no session, or a wrong htmx header) is refused before its body
// is read: nobody is kept waiting for a body that would be refused anyway.
func (s *Server) requireCSRF(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		given := r.Header.Get(csrfHeader)
		if err != nil || !sessionPattern.MatchString(c.Value) || r.Context().Value(newSessionKey{}) != nil ||
			(given != "" && !hmac.Equal([]byte(given), []byte(s.csrfFor(c.Value)))) {
			// Closing the connection after the answer: net/http would otherwise read the unread
			// body before sending it.
			w.Header().Set("Connection", "close")
			s.fail(w, r, errCSRF)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, bodyReadFailed(err, &badRequestError{"The form could not be read: it may be too large."}))
			return
		}
		if given == "" {
			given = r.PostForm.Get(csrfField)
		}
		if given == "" || !hmac.Equal([]byte(given), []byte(s.csrfFor(c.Value))) {
			s.fail(w, r, errCSRF)
			return
		}
		next(w, r)
	}
}
