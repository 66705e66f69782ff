package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"

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
