// Package gateway is Boxoffice's side of the card processor: an interface with two halves — the
// web tier tokenises a card (so the full number goes no further), the payment service charges
// the token — and the sandbox processor that follows the usual test cards.
package gateway

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
	"golang.org/x/sync/errgroup"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// Tokenizer turns a card number into a token the rest of the system can carry safely.
type Tokenizer interface {
	Tokenize(ctx context.Context, cardNumber string) (event.Card, error)
}

// Charger charges a tokenised card. Implementations must honour IdempotencyKey: a second charge
// with the same key returns the first result and moves no money.
type Charger interface {
	Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error)
}

// Refunder gives back a charge in full. Implementations must honour IdempotencyKey: a second
// refund with the same key returns the first result and moves no money.
type Refunder interface {
	Refund(ctx context.Context, req RefundRequest) (RefundResult, error)
}

// BatchCharger is a processor that takes many charges in one request. results[i] answers
// reqs[i] and each honours its IdempotencyKey as Charge does; an error means no answer of the
// call can be relied on, and repeating the whole call is safe. answered, if not nil, is called
// (perhaps concurrently) once for each request as its answer arrives, which for a processor
// that answers some requests later than others is before the call returns: the payment
// service judges each approval by when it was given. The payment service uses it where a
// processor offers it and calls Charge concurrently where not.
type BatchCharger interface {
	ChargeAll(ctx context.Context, reqs []ChargeRequest, answered func(i int)) (results []ChargeResult, err error)
}

// Processor is what the payment service needs of a card processor.
type Processor interface {
	Charger
	Refunder
}

// RefundRequest asks for an approved charge to be refunded in full.
type RefundRequest struct {
	IdempotencyKey  string
	ChargeReference string
	AmountCents     int64
	Currency        string
	Reason          string
}

// RefundResult is the processor's receipt for a refund.
type RefundResult struct {
	Reference string
}

// ChargeRequest asks for one payment.
type ChargeRequest struct {
	IdempotencyKey string
	Card           event.Card
	AmountCents    int64
	Currency       string
	Description    string
}

// ChargeResult is the processor's answer. A decline is a result, not an error: errors are for
// failures worth retrying (timeouts, outages).
type ChargeResult struct {
	Approved      bool
	Reference     string
	DeclineCode   string
	DeclineReason string
}

// InvalidCardError explains why a card number was refused before any charge was attempted.
type InvalidCardError struct{ Reason string }

func (e *InvalidCardError) Error() string { return e.Reason }

// Decline codes, as card processors name them.
const (
	DeclineGeneric           = "card_declined"
	DeclineInsufficientFunds = "insufficient_funds"
	DeclineProcessing        = "processing_error" // the processor refused the request itself
)

type testCard struct {
	brand         string
	declineCode   string // empty: the card pays
	declineReason string
	delay         time.Duration // how long the processor takes to answer
}

// Test cards the sandbox knows, by their full number. Any other valid number is refused at
// tokenisation: a sandbox must never look like it accepted a real card.
var sandboxCards = map[string]testCard{
	"4242424242424242": {brand: "visa"},
	"5555555555554444": {brand: "mastercard"},
	"4000000000000002": {brand: "visa", declineCode: DeclineGeneric, declineReason: "Your card was declined."},
	"4000000000009995": {brand: "visa", declineCode: DeclineInsufficientFunds, declineReason: "Your card has insufficient funds."},
	// Pays, slowly: with a short HOLD_DURATION it shows a payment that completes after the
	// seats' hold ran out, and its refund.
	"4000000000003063": {brand: "visa", delay: SlowCardDelay},
}

// SlowCardDelay is how long the sandbox takes to approve its slow test card.
const SlowCardDelay = 3 * time.Second

// TestCardsHint is what the form says about which cards work.
const TestCardsHint = "Sandbox: 4242 4242 4242 4242 pays, 4000 0000 0000 0002 is declined, 4000 0000 0000 9995 has insufficient funds."

// Sandbox is a card processor that moves no money: its ledger is a table of its own, keyed by
// idempotency key like a real processor's.
type Sandbox struct {
	db *sqlx.DB
}

// NewSandbox returns the sandbox processor over db.
func NewSandbox(db *sqlx.DB) *Sandbox { return &Sandbox{db: db} }

// NormalizeCardNumber drops the spaces and dashes people type.
func NormalizeCardNumber(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)
}

// ValidateCardNumber checks the shape and the Luhn digit of a card number.
func ValidateCardNumber(number string) error {
	if number == "" {
		return &InvalidCardError{"Enter a card number."}
	}
	if len(number) < 12 || len(number) > 19 {
		return &InvalidCardError{"A card number has 12 to 19 digits."}
	}
	sum := 0
	for i := range len(number) {
		c := number[len(number)-1-i]
		if c < '0' || c > '9' {
			return &InvalidCardError{"A card number has only digits."}
		}
		d := int(c - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	if sum%10 != 0 {
		return &InvalidCardError{"That card number is not valid: check the digits."}
	}
	return nil
}

// Tokenize validates the number and returns a token naming the test card, new each time. It gives
// no fingerprint: every visitor pays with the same published test cards, so a seat cap by card
// would make strangers share one; only a real processor's fingerprint names one person's card.
func (s *Sandbox) Tokenize(_ context.Context, cardNumber string) (event.Card, error) {
	number := NormalizeCardNumber(cardNumber)
	if err := ValidateCardNumber(number); err != nil {
		return event.Card{}, err
	}
	card, ok := sandboxCards[number]
	if !ok {
		return event.Card{}, &InvalidCardError{"Only test cards work here. " + TestCardsHint}
	}
	last4 := number[len(number)-4:]
	return event.Card{Brand: card.brand, Last4: last4, Token: "tok_sandbox_" + last4 + "_" + randomHex(8)}, nil
}

// Charge approves or declines according to the test card behind the token, once per
// idempotency key. The usual case is one round trip: the insert, whose conflict path reads what
// the ledger holds, so a repeated key still gets the first answer.
func (s *Sandbox) Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error) {
	if req.IdempotencyKey == "" {
		return ChargeResult{}, errors.New("sandbox charge: idempotency key required")
	}
	result, delay := sandboxAnswer(req)
	if delay > 0 {
		// Only here is asking the ledger first worth its round trip: a repeat answers at once
		// instead of waiting out the delay again.
		if res, found, err := s.recorded(ctx, req.IdempotencyKey); err != nil || found {
			return res, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ChargeResult{}, ctx.Err()
		}
	}
	// The insert answers with what it recorded; if the key was charged before (a repeat, or a
	// concurrent duplicate), the ledger is read for what it holds.
	var charged ledgerCharge
	err := prepared.Get(ctx, s.db, &charged, `INSERT INTO payment_sandbox.charges
		(idempotency_key, reference, card_token, amount_cents, currency, approved, decline_code, decline_reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING
		RETURNING approved, reference, decline_code, decline_reason`,
		req.IdempotencyKey, result.Reference, req.Card.Token, req.AmountCents, req.Currency,
		result.Approved, result.DeclineCode, result.DeclineReason)
	if errors.Is(err, sql.ErrNoRows) {
		return s.mustBeRecorded(ctx, req.IdempotencyKey)
	}
	if err != nil {
		return ChargeResult{}, fmt.Errorf("sandbox charge: %w", err)
	}
	return ChargeResult(charged), nil
}

// ChargeAll is Charge for many requests in one round trip and one commit, as a processor's
// batch endpoint is one request. The sandbox's ledger lives in Boxoffice's own database, so each
// charge's commit is Boxoffice's cost where a real processor's would be its own; one commit a
// batch keeps the sandbox from being the bottleneck it would not be in production. The slow test
// card is charged on its own, so it still takes its time, and the batch's other answers are
// given (answered) without waiting for it.
func (s *Sandbox) ChargeAll(ctx context.Context, reqs []ChargeRequest, answered func(i int)) ([]ChargeResult, error) {
	for _, req := range reqs {
		if req.IdempotencyKey == "" {
			return nil, errors.New("sandbox charge: idempotency key required")
		}
	}
	if answered == nil {
		answered = func(int) {}
	}
	results := make([]ChargeResult, len(reqs))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var slow errgroup.Group
	type quickCharge struct {
		req    ChargeRequest
		answer ChargeResult
	}
	var quick []quickCharge
	at := make(map[string][]int, len(reqs)) // the requests under each key, in case one comes twice
	for i, req := range reqs {
		answer, delay := sandboxAnswer(req)
		if delay > 0 {
			slow.Go(func() (err error) {
				if results[i], err = s.Charge(ctx, req); err == nil {
					answered(i)
				}
				return err
			})
			continue
		}
		if _, seen := at[req.IdempotencyKey]; !seen {
			quick = append(quick, quickCharge{req, answer})
		}
		at[req.IdempotencyKey] = append(at[req.IdempotencyKey], i)
	}
	fail := func(err error) ([]ChargeResult, error) {
		cancel()
		_ = slow.Wait()
		return nil, err
	}
	if len(quick) > 0 {
		// In the order of their keys, so two batches sharing keys cannot wait on each other.
		slices.SortFunc(quick, func(a, b quickCharge) int { return strings.Compare(a.req.IdempotencyKey, b.req.IdempotencyKey) })
		n := len(quick)
		keys, refs, tokens, currencies, codes, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		amounts, approvals := make([]int64, n), make([]bool, n)
		for i, q := range quick {
			keys[i], refs[i], tokens[i], amounts[i], currencies[i] = q.req.IdempotencyKey, q.answer.Reference, q.req.Card.Token, q.req.AmountCents, q.req.Currency
			approvals[i], codes[i], reasons[i] = q.answer.Approved, q.answer.DeclineCode, q.answer.DeclineReason
		}
		// What the insert recorded, and what the ledger held before it for the keys it skipped.
		var charged []struct {
			Key string `db:"idempotency_key"`
			ledgerCharge
		}
		err := prepared.Select(ctx, s.db, &charged, `WITH inserted AS (
				INSERT INTO payment_sandbox.charges
					(idempotency_key, reference, card_token, amount_cents, currency, approved, decline_code, decline_reason)
				SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::boolean[], $7::text[], $8::text[])
				ON CONFLICT (idempotency_key) DO NOTHING
				RETURNING idempotency_key, approved, reference, decline_code, decline_reason
			)
			SELECT * FROM inserted
			UNION ALL
			SELECT idempotency_key, approved, reference, decline_code, decline_reason FROM payment_sandbox.charges
			WHERE idempotency_key = ANY($1::text[]) AND idempotency_key NOT IN (SELECT idempotency_key FROM inserted)`,
			pq.Array(keys), pq.Array(refs), pq.Array(tokens), pq.Array(amounts), pq.Array(currencies),
			pq.Array(approvals), pq.Array(codes), pq.Array(reasons))
		if err != nil {
			return fail(fmt.Errorf("sandbox charge %d: %w", n, err))
		}
		for _, c := range charged {
			for _, i := range at[c.Key] {
				results[i] = ChargeResult(c.ledgerCharge)
				answered(i)
			}
			delete(at, c.Key)
		}
		// A key neither inserted nor seen was charged by a concurrent request that committed
		// after this statement's snapshot: the ledger has its answer now.
		for key, indexes := range at {
			res, err := s.mustBeRecorded(ctx, key)
			if err != nil {
				return fail(err)
			}
			for _, i := range indexes {
				results[i] = res
				answered(i)
			}
		}
	}
	if err := slow.Wait(); err != nil {
		return nil, err
	}
	return results, nil
}

// sandboxAnswer is the sandbox's answer to a charge of the test card behind the token, and how
// long that card takes to give it.
func sandboxAnswer(req ChargeRequest) (ChargeResult, time.Duration) {
	card, known := sandboxCardForToken(req.Card.Token)
	result := ChargeResult{Approved: true, Reference: "ch_sandbox_" + randomHex(12)}
	switch {
	case !known:
		result = ChargeResult{Reference: result.Reference, DeclineCode: DeclineGeneric, DeclineReason: "The card token is not known to the sandbox."}
	case card.declineCode != "":
		result = ChargeResult{Reference: result.Reference, DeclineCode: card.declineCode, DeclineReason: card.declineReason}
	}
	return result, card.delay
}

// mustBeRecorded is the answer recorded under a key that an insert found taken.
func (s *Sandbox) mustBeRecorded(ctx context.Context, key string) (ChargeResult, error) {
	res, found, err := s.recorded(ctx, key)
	if err == nil && !found {
		err = fmt.Errorf("sandbox charge: key %q neither recorded nor found", key)
	}
	return res, err
}

// ledgerCharge is a charge's answer as the ledger holds it.
type ledgerCharge struct {
	Approved      bool   `db:"approved"`
	Reference     string `db:"reference"`
	DeclineCode   string `db:"decline_code"`
	DeclineReason string `db:"decline_reason"`
}

// recorded returns the answer given before under key, if any.
func (s *Sandbox) recorded(ctx context.Context, key string) (ChargeResult, bool, error) {
	var charged ledgerCharge
	err := prepared.Get(ctx, s.db, &charged, `SELECT approved, reference, decline_code, decline_reason
		FROM payment_sandbox.charges WHERE idempotency_key = $1`, key)
	if errors.Is(err, sql.ErrNoRows) {
		return ChargeResult{}, false, nil
	}
	if err != nil {
		return ChargeResult{}, false, fmt.Errorf("sandbox charge: look up key %q: %w", key, err)
	}
	return ChargeResult(charged), true, nil
}

// Refund refunds an approved sandbox charge in full, once per idempotency key; a charge already
// refunded under another key is refused, as processors do.
func (s *Sandbox) Refund(ctx context.Context, req RefundRequest) (RefundResult, error) {
	if req.IdempotencyKey == "" {
		return RefundResult{}, errors.New("sandbox refund: idempotency key required")
	}
	var charge struct {
		Approved    bool  `db:"approved"`
		AmountCents int64 `db:"amount_cents"`
	}
	err := s.db.GetContext(ctx, &charge, `SELECT approved, amount_cents FROM payment_sandbox.charges WHERE reference = $1`, req.ChargeReference)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !charge.Approved) {
		return RefundResult{}, &RefundRefusedError{Reason: fmt.Sprintf("no approved charge %q to refund", req.ChargeReference)}
	}
	if err != nil {
		return RefundResult{}, fmt.Errorf("sandbox refund: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO payment_sandbox.refunds (idempotency_key, reference, charge_reference, amount_cents, reason)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
		req.IdempotencyKey, "re_sandbox_"+randomHex(12), req.ChargeReference, charge.AmountCents, req.Reason)
	if err != nil {
		return RefundResult{}, fmt.Errorf("sandbox refund: %w", err)
	}
	var refund struct {
		Key       string `db:"idempotency_key"`
		Reference string `db:"reference"`
	}
	err = s.db.GetContext(ctx, &refund, `SELECT idempotency_key, reference FROM payment_sandbox.refunds WHERE charge_reference = $1`, req.ChargeReference)
	if err != nil {
		return RefundResult{}, fmt.Errorf("sandbox refund: %w", err)
	}
	if refund.Key != req.IdempotencyKey {
		return RefundResult{}, &RefundRefusedError{Reason: fmt.Sprintf("charge %s was already refunded (%s)", req.ChargeReference, refund.Reference)}
	}
	return RefundResult{Reference: refund.Reference}, nil
}

// RefundRefusedError is a refund the processor will never make: no retry can help, a person must
// look at it.
type RefundRefusedError struct{ Reason string }

func (e *RefundRefusedError) Error() string { return "refund refused: " + e.Reason }

// sandboxCardForToken reads the test card back from a tok_sandbox_<last4>_<random> token; the
// test cards' last four digits are all different.
func sandboxCardForToken(token string) (testCard, bool) {
	parts := strings.Split(token, "_")
	if len(parts) != 4 || parts[0] != "tok" || parts[1] != "sandbox" {
		return testCard{}, false
	}
	for number, card := range sandboxCards {
		if strings.HasSuffix(number, parts[2]) {
			return card, true
		}
	}
	return testCard{}, false
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
