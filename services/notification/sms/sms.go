// Package sms is Boxoffice's side of the SMS provider: the Sender interface the notification
// service uses, and the sandbox provider whose inbox stands in for people's phones.
package sms

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/services/prepared"
)

// Sender delivers a text message. A *DeliveryError means the provider refused this message
// for good (a number that cannot receive texts); any other error is worth retrying.
// Implementations must honour Message.Key: a second Send with the same key delivers nothing
// new and returns the first message's id, so a retry after a crash never texts twice.
type Sender interface {
	Send(ctx context.Context, msg Message) (providerID string, err error)
}

// Message is one text to send.
type Message struct {
	Key   string // idempotency key: one text per key, however often it is sent
	Phone string
	Body  string
}

// DeliveryError is a provider's final "no" for one message.
type DeliveryError struct{ Reason string }

func (e *DeliveryError) Error() string { return e.Reason }

// SandboxUndeliverableSuffix marks phone numbers the sandbox refuses, so the "SMS failed" path
// can be tried by hand: any number ending in 0000.
const SandboxUndeliverableSuffix = "0000"

// Sandbox is an SMS provider that delivers into a table instead of a phone: the inbox shown
// at /dev/sms.
type Sandbox struct {
	db  *sqlx.DB
	now func() time.Time
}

// NewSandbox returns the sandbox provider over db.
func NewSandbox(db *sqlx.DB, now func() time.Time) *Sandbox {
	return &Sandbox{db: db, now: now}
}

// Send stores the message in the sandbox inbox, once per key.
func (s *Sandbox) Send(ctx context.Context, msg Message) (string, error) {
	if msg.Key == "" {
		return "", fmt.Errorf("sandbox sms: idempotency key required")
	}
	if strings.HasSuffix(digitsOf(msg.Phone), SandboxUndeliverableSuffix) {
		return "", &DeliveryError{Reason: "The number cannot receive text messages (sandbox: numbers ending in 0000 always fail)."}
	}
	// The insert answers with the message's id; a message sent before under the key is read
	// instead. One round trip in the usual case.
	var id string
	err := prepared.Get(ctx, s.db, &id, `INSERT INTO sms_sandbox.messages (id, idempotency_key, phone, body, sent_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
		"sms_"+randomHex(10), msg.Key, msg.Phone, msg.Body, s.now())
	if errors.Is(err, sql.ErrNoRows) {
		err = prepared.Get(ctx, s.db, &id, `SELECT id FROM sms_sandbox.messages WHERE idempotency_key = $1`, msg.Key)
	}
	if err != nil {
		return "", fmt.Errorf("sandbox sms: %w", err)
	}
	return id, nil
}

// InboxMessage is one message in the sandbox inbox.
type InboxMessage struct {
	ID     string    `db:"id" json:"id"`
	Phone  string    `db:"phone" json:"phone"`
	Body   string    `db:"body" json:"body"`
	SentAt time.Time `db:"sent_at" json:"sent_at"`
}

// Inbox returns the newest messages first, like a phone. An empty phone lists every number.
func (s *Sandbox) Inbox(ctx context.Context, phone string, limit int) ([]InboxMessage, error) {
	var msgs []InboxMessage
	err := s.db.SelectContext(ctx, &msgs, `SELECT id, phone, body, sent_at FROM sms_sandbox.messages
		WHERE $1 = '' OR phone = $1 ORDER BY sent_at DESC, id DESC LIMIT $2`, phone, limit)
	if err != nil {
		return nil, fmt.Errorf("read sandbox inbox: %w", err)
	}
	return msgs, nil
}

func digitsOf(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
