package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
)

// Client is who sent a booking request: the browser session, when the request carries a valid
// one, and the address it came from. An idempotency key belongs to the client that first used
// it, and the booking service caps the seats one client may hold on a show.
type Client struct {
	Session string // the boxoffice_session cookie's id; empty without one
	Address string // clientAddress: an IPv4 address or an IPv6 /64
}

// clientOf reads who sent r, once per request.
func (s *Server) clientOf(r *http.Request) Client {
	c := Client{Address: clientAddress(r, s.deps.TrustedProxies)}
	if cookie, err := r.Cookie(sessionCookie); err == nil && sessionPattern.MatchString(cookie.Value) {
		c.Session = cookie.Value
	}
	return c
}

// scope is what an idempotency key is claimed under: the session when there is one (a phone
// that changes networks keeps its retries), else the address, for scripts without a cookie.
func (c Client) scope() string {
	if c.Session != "" {
		return "session:" + c.Session
	}
	return "address:" + c.Address
}

// claimedKey is the idempotency key as web.booking_requests stores it: a MAC of the client's
// scope and the key, so another client's use of the same key is a different claim, and the
// table holds neither sessions nor addresses.
func (in *Intake) claimedKey(c Client, key string) string {
	mac := hmac.New(sha256.New, in.secret)
	mac.Write([]byte("idempotency\x00" + c.scope() + "\x00" + key))
	return hex.EncodeToString(mac.Sum(nil))
}

// buyerKey is an opaque name for one of a buyer's identities, for the booking service's seat
// caps: a truncated MAC under the web's secret, so the service can compare them but the
// events and its tables carry no session, address or phone number.
func (in *Intake) buyerKey(kind, value string) string {
	if value == "" {
		return ""
	}
	mac := hmac.New(sha256.New, in.secret)
	mac.Write([]byte("buyer-" + kind + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// phoneIdentity is the part of a phone number that names the line however it is written:
// its last nine digits, so "+44 7700 900123" and "07700 900123" are one buyer.
func phoneIdentity(phone string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
	return digits[max(len(digits)-9, 0):]
}
