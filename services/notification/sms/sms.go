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
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/services/prepared"
)

// Sender delivers a text message. A *DeliveryError means the provider refused this message
// for good (a number that cannot receive texts); any other error is worth retrying.
// Implementations must honour Message.Key: a second Send with the same key delivers nothing
// new and returns the first message's id, so a retry after a crash never texts twice.
type Sender interface {
	Send(ctx context.Context, msg Message) (providerID string, err error)
}

// BatchSender is a provider that takes many messages in one request: receipts[i] answers msgs[i],
// each honouring its Key as Send does. An error means no receipt of the call can be relied on,
// and repeating the whole call is safe. The notification service uses it where a provider offers
// it and calls Send concurrently where not.
type BatchSender interface {
	SendAll(ctx context.Context, msgs []Message) (receipts []Receipt, err error)
}

// Receipt is a provider's answer to one message of a batch: the message's id, or the
// provider's final "no" for it.
type Receipt struct {
	ProviderID string
	Refused    *DeliveryError
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
	if refused := sandboxRefusal(msg); refused != nil {
		return "", refused
	}
	// The insert answers with the message's id; a message sent before under the key is read
	// instead. One round trip in the usual case.
	var id string
	err := prepared.Get(ctx, s.db, &id, `INSERT INTO sms_sandbox.messages (id, idempotency_key, phone, body, sent_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
		"sms_"+randomHex(10), msg.Key, msg.Phone, msg.Body, s.now())
	if errors.Is(err, sql.ErrNoRows) {
		return s.sentBefore(ctx, msg.Key)
	}
	if err != nil {
		return "", fmt.Errorf("sandbox sms: %w", err)
	}
	return id, nil
}

// SendAll is Send for many messages in one round trip and one commit. The sandbox's inbox lives
// in Boxoffice's own database, so each message's commit is Boxoffice's cost where a real
// provider's would be its own; one commit a batch keeps the sandbox from being the bottleneck it
// would not be in production.
func (s *Sandbox) SendAll(ctx context.Context, msgs []Message) ([]Receipt, error) {
	receipts := make([]Receipt, len(msgs))
	var deliverable []Message
	at := make(map[string][]int, len(msgs)) // the messages under each key, in case one comes twice
	for i, msg := range msgs {
		if msg.Key == "" {
			return nil, fmt.Errorf("sandbox sms: idempotency key required")
		}
		if refused := sandboxRefusal(msg); refused != nil {
			receipts[i].Refused = refused
			continue
		}
		if _, seen := at[msg.Key]; !seen {
			deliverable = append(deliverable, msg)
		}
		at[msg.Key] = append(at[msg.Key], i)
	}
	if len(deliverable) == 0 {
		return receipts, nil
	}
	// In the order of their keys, so two batches sharing keys cannot wait on each other.
	slices.SortFunc(deliverable, func(a, b Message) int { return strings.Compare(a.Key, b.Key) })
	n := len(deliverable)
	ids, keys, phones, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, msg := range deliverable {
		ids[i], keys[i], phones[i], bodies[i] = "sms_"+randomHex(10), msg.Key, msg.Phone, msg.Body
	}
	// What the insert stored, and what the inbox held before it for the keys it skipped.
	var stored []struct {
		Key string `db:"idempotency_key"`
		ID  string `db:"id"`
	}
	err := prepared.Select(ctx, s.db, &stored, `WITH inserted AS (
			INSERT INTO sms_sandbox.messages (id, idempotency_key, phone, body, sent_at)
			SELECT id, key, phone, body, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS m (id, key, phone, body)
			ON CONFLICT (idempotency_key) DO NOTHING
			RETURNING idempotency_key, id
		)
		SELECT * FROM inserted
		UNION ALL
		SELECT idempotency_key, id FROM sms_sandbox.messages
		WHERE idempotency_key = ANY($2::text[]) AND idempotency_key NOT IN (SELECT idempotency_key FROM inserted)`,
		pq.Array(ids), pq.Array(keys), pq.Array(phones), pq.Array(bodies), s.now())
	if err != nil {
		return nil, fmt.Errorf("sandbox sms: send %d: %w", len(keys), err)
	}
	for _, m := range stored {
		for _, i := range at[m.Key] {
			receipts[i].ProviderID = m.ID
		}
		delete(at, m.Key)
	}
	// A key neither inserted nor seen was sent by a concurrent request that committed after
	// this statement's snapshot: the inbox has its message now.
	for key, indexes := range at {
		id, err := s.sentBefore(ctx, key)
		if err != nil {
			return nil, err
		}
		for _, i := range indexes {
			receipts[i].ProviderID = id
		}
	}
	return receipts, nil
}

// sandboxRefusal is the sandbox's final "no" for a message to an undeliverable number, or nil.
func sandboxRefusal(msg Message) *DeliveryError {
	if strings.HasSuffix(digitsOf(msg.Phone), SandboxUndeliverableSuffix) {
		return &DeliveryError{Reason: "The number cannot receive text messages (sandbox: numbers ending in 0000 always fail)."}
	}
	return nil
}

// sentBefore is the id of the message an insert found already sent under key.
func (s *Sandbox) sentBefore(ctx context.Context, key string) (string, error) {
	var id string
	if err := prepared.Get(ctx, s.db, &id, `SELECT id FROM sms_sandbox.messages WHERE idempotency_key = $1`, key); err != nil {
		return "", fmt.Errorf("sandbox sms: look up key %q: %w", key, err)
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

// InboxOf returns the messages about the given bookings, newest first: those whose idempotency
// key starts with one of the booking ids and a slash, as the notification service writes them.
// An empty phone lists every number.
func (s *Sandbox) InboxOf(ctx context.Context, bookingIDs []string, phone string, limit int) ([]InboxMessage, error) {
	var msgs []InboxMessage
	err := s.db.SelectContext(ctx, &msgs, `SELECT id, phone, body, sent_at FROM sms_sandbox.messages
		WHERE split_part(idempotency_key, '/', 1) = ANY($1) AND ($2 = '' OR phone = $2)
		ORDER BY sent_at DESC, id DESC LIMIT $3`, pq.Array(bookingIDs), phone, limit)
	if err != nil {
		return nil, fmt.Errorf("read sandbox inbox of %d bookings: %w", len(bookingIDs), err)
	}
	return msgs, nil
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
