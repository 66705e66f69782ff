// Package sms is Boxoffice's side of the SMS provider: the Sender interface the notification
// service uses, and the sandbox provider whose inbox stands in for people's phones.
package sms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Sender delivers a text message. A *DeliveryError means the provider refused this message
// for good (a number that cannot receive texts); any other error is worth retrying.
type Sender interface {
	Send(ctx context.Context, phone, body string) (providerID string, err error)
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

// Send stores the message in the sandbox inbox.
func (s *Sandbox) Send(ctx context.Context, phone, body string) (string, error) {
	if strings.HasSuffix(digitsOf(phone), SandboxUndeliverableSuffix) {
		return "", &DeliveryError{Reason: "The number cannot receive text messages (sandbox: numbers ending in 0000 always fail)."}
	}
	id := "sms_" + randomHex(10)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO sms_sandbox.messages (id, phone, body, sent_at)
		VALUES ($1, $2, $3, $4)`, id, phone, body, s.now()); err != nil {
		return "", fmt.Errorf("sandbox sms: %w", err)
	}
	return id, nil
}

// Message is one message in the sandbox inbox.
type Message struct {
	ID     string    `db:"id" json:"id"`
	Phone  string    `db:"phone" json:"phone"`
	Body   string    `db:"body" json:"body"`
	SentAt time.Time `db:"sent_at" json:"sent_at"`
}

// Inbox returns the newest messages first, like a phone. An empty phone lists every number.
func (s *Sandbox) Inbox(ctx context.Context, phone string, limit int) ([]Message, error) {
	var msgs []Message
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
