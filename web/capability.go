package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// A booking is nobody else's business: its pages, API reads, event streams and ticket answer
// only to a request carrying the booking's capability token (?token=…), an HMAC of its id
// under a key the web replicas share. The token is handed to whoever made the booking, in the
// URLs the API returns and in the page the form redirects to. Without it, or with another
// booking's, the answer is the same 404 as for a booking that does not exist.

const capabilitySecret = "booking-capability"

// CapabilityKey returns the key booking tokens are signed with, creating it on first use; every
// replica reads the same one from the database.
func CapabilityKey(ctx context.Context, db *sqlx.DB) ([]byte, error) {
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("capability key: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO web.secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		capabilitySecret, fresh); err != nil {
		return nil, fmt.Errorf("capability key: %w", err)
	}
	var key []byte
	if err := db.GetContext(ctx, &key, `SELECT value FROM web.secrets WHERE name = $1`, capabilitySecret); err != nil {
		return nil, fmt.Errorf("capability key: %w", err)
	}
	return key, nil
}

const doorKeySecret = "door-key"

// DoorKey is the key door staff sign in with to admit tickets. A configured one (DOOR_KEY) is
// used as given; otherwise one is made on first use and kept in web.secrets, so every replica
// shares it, and generated reports that this call made it: the operator is told once, by the
// replica that made it, and it is not repeated in every start's log.
func DoorKey(ctx context.Context, db *sqlx.DB, configured string) (key string, generated bool, err error) {
	if configured != "" {
		return configured, false, nil
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return "", false, fmt.Errorf("door key: %w", err)
	}
	res, err := db.ExecContext(ctx, `INSERT INTO web.secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
		doorKeySecret, fresh)
	if err != nil {
		return "", false, fmt.Errorf("door key: %w", err)
	}
	made, _ := res.RowsAffected()
	var stored []byte
	if err := db.GetContext(ctx, &stored, `SELECT value FROM web.secrets WHERE name = $1`, doorKeySecret); err != nil {
		return "", false, fmt.Errorf("door key: %w", err)
	}
	// 120 bits, short enough to type once on the door's device.
	return base64.RawURLEncoding.EncodeToString(stored[:15]), made == 1, nil
}

// BookingToken is the capability token of a booking: 144 bits of HMAC-SHA256 over its id.
func BookingToken(key []byte, bookingID string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("booking:" + bookingID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

func (s *Server) token(bookingID string) string { return BookingToken(s.capabilityKey, bookingID) }

// bookingID reads a booking id from the path and checks the request's token for it; a malformed
// id, a missing, forged or another booking's token all read as "no such booking".
func (s *Server) bookingID(r *http.Request) (string, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return "", ErrBookingNotFound
	}
	if !s.tokenMatches(r, id.String()) {
		return "", ErrBookingNotFound
	}
	return id.String(), nil
}

func (s *Server) tokenMatches(r *http.Request, bookingID string) bool {
	given := r.URL.Query().Get("token")
	return given != "" && hmac.Equal([]byte(given), []byte(s.token(bookingID)))
}

// withToken adds the booking's token to a URL of one of its resources.
func (s *Server) withToken(path, bookingID string, query ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(query); i += 2 {
		v.Set(query[i], query[i+1])
	}
	v.Set("token", s.token(bookingID))
	return path + "?" + v.Encode()
}

func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}
