package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// TestSandboxFollowsTheTestCards: the usual test cards approve or decline as documented, and
// the token is all that leaves tokenisation — never the number.
func TestSandboxFollowsTheTestCards(t *testing.T) {
	sandbox := gateway.NewSandbox(dbtest.NewMigrated(t, nil))
	ctx := context.Background()
	for i, tc := range []struct {
		number, brand string
		approved      bool
		code          string
	}{
		{"4242 4242 4242 4242", "visa", true, ""},
		{"5555-5555-5555-4444", "mastercard", true, ""},
		{"4000000000000002", "visa", false, gateway.DeclineGeneric},
		{"4000 0000 0000 9995", "visa", false, gateway.DeclineInsufficientFunds},
	} {
		card, err := sandbox.Tokenize(ctx, tc.number)
		if err != nil {
			t.Fatalf("%s: %v", tc.number, err)
		}
		digits := strings.NewReplacer(" ", "", "-", "").Replace(tc.number)
		if card.Brand != tc.brand || card.Last4 != digits[12:] || strings.Contains(card.Token, digits[:12]) {
			t.Errorf("%s: tokenised to %+v", tc.number, card)
		}
		res, err := sandbox.Charge(ctx, gateway.ChargeRequest{IdempotencyKey: string(rune('a' + i)), Card: card, AmountCents: 1950, Currency: "GBP"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Approved != tc.approved || res.DeclineCode != tc.code || res.Reference == "" {
			t.Errorf("%s: charge %+v, want approved=%v code=%q", tc.number, res, tc.approved, tc.code)
		}
		if !tc.approved && res.DeclineReason == "" {
			t.Errorf("%s: a decline without a reason for the customer", tc.number)
		}
	}
}

// TestSandboxChargesOncePerIdempotencyKey: a retried charge returns the first result.
func TestSandboxChargesOncePerIdempotencyKey(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	sandbox := gateway.NewSandbox(conn)
	ctx := context.Background()
	card, err := sandbox.Tokenize(ctx, "4242424242424242")
	if err != nil {
		t.Fatal(err)
	}
	req := gateway.ChargeRequest{IdempotencyKey: "booking-1", Card: card, AmountCents: 2790, Currency: "GBP"}
	first, err := sandbox.Charge(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sandbox.Charge(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var charges int
	if err := conn.Get(&charges, `SELECT count(*) FROM payment_sandbox.charges`); err != nil {
		t.Fatal(err)
	}
	if again != first || charges != 1 {
		t.Errorf("second charge %+v (first %+v), %d charges in the ledger; want the same result and 1 charge", again, first, charges)
	}
}

// TestSandboxRefundsApprovedChargesOnce: one refund per charge, the same answer per key, and
// nothing to refund on a decline.
func TestSandboxRefundsApprovedChargesOnce(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	sandbox := gateway.NewSandbox(conn)
	ctx := context.Background()
	charge := func(number, key string) gateway.ChargeResult {
		card, err := sandbox.Tokenize(ctx, number)
		if err != nil {
			t.Fatal(err)
		}
		res, err := sandbox.Charge(ctx, gateway.ChargeRequest{IdempotencyKey: key, Card: card, AmountCents: 1395, Currency: "GBP"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	paid, declined := charge("4242424242424242", "k1"), charge("4000000000000002", "k2")
	req := gateway.RefundRequest{IdempotencyKey: "refund/k1", ChargeReference: paid.Reference}
	first, err := sandbox.Refund(ctx, req)
	if err != nil || first.Reference == "" {
		t.Fatalf("refund: %+v %v", first, err)
	}
	if again, err := sandbox.Refund(ctx, req); err != nil || again != first {
		t.Errorf("repeated refund: %+v %v, want %+v", again, err, first)
	}
	var refused *gateway.RefundRefusedError
	if _, err := sandbox.Refund(ctx, gateway.RefundRequest{IdempotencyKey: "other", ChargeReference: paid.Reference}); !errors.As(err, &refused) {
		t.Errorf("a second refund of one charge: %v, want a refusal", err)
	}
	if _, err := sandbox.Refund(ctx, gateway.RefundRequest{IdempotencyKey: "refund/k2", ChargeReference: declined.Reference}); !errors.As(err, &refused) {
		t.Errorf("refund of a declined charge: %v, want a refusal", err)
	}
	var refunded int64
	if err := conn.Get(&refunded, `SELECT coalesce(sum(amount_cents), 0) FROM payment_sandbox.refunds`); err != nil || refunded != 1395 {
		t.Errorf("refunded %d (err %v), want the one charge's 1395", refunded, err)
	}
}

// TestSandboxSlowCardApprovesLate: the slow test card pays after SlowCardDelay, and gives up
// when the caller does.
func TestSandboxSlowCardApprovesLate(t *testing.T) {
	sandbox := gateway.NewSandbox(dbtest.NewMigrated(t, nil))
	card, err := sandbox.Tokenize(context.Background(), "4000 0000 0000 3063")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := sandbox.Charge(ctx, gateway.ChargeRequest{IdempotencyKey: "slow-1", Card: card}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled slow charge: %v, want the context's error", err)
	}
	start := time.Now()
	res, err := sandbox.Charge(context.Background(), gateway.ChargeRequest{IdempotencyKey: "slow-2", Card: card})
	if err != nil || !res.Approved || time.Since(start) < gateway.SlowCardDelay {
		t.Errorf("slow card: %+v %v after %v, want approved after %v", res, err, time.Since(start), gateway.SlowCardDelay)
	}
}

func TestTokenizeRefusesBadAndRealCards(t *testing.T) {
	sandbox := gateway.NewSandbox(nil) // tokenisation never touches the ledger
	for number, want := range map[string]string{
		"":                    "Enter a card number.",
		"4242":                "12 to 19 digits",
		"4242 4242 4242 424x": "only digits",
		"4242 4242 4242 4241": "not valid",
		"4111 1111 1111 1111": "Only test cards work here.",
	} {
		_, err := sandbox.Tokenize(context.Background(), number)
		var invalid *gateway.InvalidCardError
		if !errors.As(err, &invalid) || !strings.Contains(invalid.Reason, want) {
			t.Errorf("Tokenize(%q): %v, want an InvalidCardError saying %q", number, err, want)
		}
	}
}

// TestSandboxTokensAreNewAndNameNoCard: every tokenisation gives a new token, and the sandbox
// gives no fingerprint: its test cards are everyone's, so a seat cap by card would make
// strangers share one.
func TestSandboxTokensAreNewAndNameNoCard(t *testing.T) {
	sandbox := gateway.NewSandbox(nil)
	ctx := context.Background()
	first, err := sandbox.Tokenize(ctx, "4242 4242 4242 4242")
	if err != nil {
		t.Fatal(err)
	}
	again, err := sandbox.Tokenize(ctx, "4242-4242-4242-4242")
	if err != nil {
		t.Fatal(err)
	}
	if first.Token == again.Token {
		t.Errorf("two tokenisations gave one token %q", first.Token)
	}
	if first.Fingerprint != "" || again.Fingerprint != "" {
		t.Errorf("fingerprints %q and %q of a shared test card, want none", first.Fingerprint, again.Fingerprint)
	}
}
