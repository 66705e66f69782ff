package web

import (
	"errors"
	"net/http"
	"os"
	"time"
)

// Connections that never finish: a body that is never sent, more event streams than a person
// opens, a stream nobody reads. Each would hold a goroutine and a connection for good.

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

// bodyDeadline gives a request with a body timeout to send all of it; after that its reads fail
// and its handler answers at once. Not http.Server.ReadTimeout: net/http would cancel every
// long-lived stream's context when it passed. Once the body has been read to its end, net/http
// clears the deadline itself (its background read starts), so a slow handler is not cut off.
func bodyDeadline(timeout time.Duration, next http.Handler) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 { // -1: chunked, or a length not known in advance
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
		}
		next.ServeHTTP(w, r)
	})
}
