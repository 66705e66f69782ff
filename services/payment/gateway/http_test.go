package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// fakeProcessor is a local stand-in for a card processor's API: it checks the key, honours
// idempotency keys, knows two cards, and can be told to fail with 503 for a while.
type fakeProcessor struct {
	mu          sync.Mutex
	charges     map[string]map[string]any // idempotency key → answer
	refunds     map[string]map[string]any // idempotency key → answer
	refunded    map[string]bool           // charge id → refunded
	chargeCalls int
	tokenCalls  int
	unavailable int // answer 503 to this many more charge requests
}

func (f *fakeProcessor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer sk_test_123" {
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": "bad key"}})
		return
	}
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	switch r.URL.Path {
	case "/moved/v1/tokens":
		// 307 keeps the method and body: a client that follows it sends the card number on.
		http.Redirect(w, r, "/v1/tokens", http.StatusTemporaryRedirect)
	case "/v1/tokens":
		f.tokenCalls++
		if f.unavailable > 0 {
			f.unavailable--
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		number, _ := body["number"].(string)
		if number != "4242424242424242" && number != "4000000000000002" {
			w.WriteHeader(http.StatusPaymentRequired)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": "Your card is not supported."}})
			return
		}
		answer := map[string]string{"token": "tok_" + number[12:], "brand": "Visa", "last4": number[12:]}
		if number == "4242424242424242" { // a fingerprint is optional: only this card has one
			answer["fingerprint"] = "fp_4242"
		}
		_ = json.NewEncoder(w).Encode(answer)
	case "/v1/charges":
		f.chargeCalls++
		if f.unavailable > 0 {
			f.unavailable--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if answer, ok := f.charges[key]; ok {
			_ = json.NewEncoder(w).Encode(answer)
			return
		}
		if body["token"] == "tok_spent" {
			w.WriteHeader(http.StatusPaymentRequired)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": "This token was already used."}})
			return
		}
		answer := map[string]any{"id": "ch_" + key, "status": "succeeded"}
		if body["token"] == "tok_0002" {
			answer = map[string]any{"id": "ch_" + key, "status": "declined", "decline_code": "card_declined", "decline_message": "Do not honour."}
		}
		f.charges[key] = answer
		_ = json.NewEncoder(w).Encode(answer)
	case "/v1/refunds":
		key := r.Header.Get("Idempotency-Key")
		if f.unavailable > 0 {
			f.unavailable--
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if answer, ok := f.refunds[key]; ok {
			_ = json.NewEncoder(w).Encode(answer)
			return
		}
		charge, _ := body["charge"].(string)
		known := false
		for _, c := range f.charges {
			known = known || (c["id"] == charge && c["status"] == "succeeded")
		}
		if !known || f.refunded[charge] {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": "Charge " + charge + " cannot be refunded."}})
			return
		}
		f.refunded[charge] = true
		answer := map[string]any{"id": "re_" + key, "status": "succeeded"}
		f.refunds[key] = answer
		_ = json.NewEncoder(w).Encode(answer)
	default:
		http.NotFound(w, r)
	}
}

func newFakeProcessor(t *testing.T) (*fakeProcessor, string) {
	f := &fakeProcessor{charges: map[string]map[string]any{}, refunds: map[string]map[string]any{}, refunded: map[string]bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func TestHTTPGatewayTokenisesAndCharges(t *testing.T) {
	f, url := newFakeProcessor(t)
	g, err := gateway.NewHTTPGateway(url, "sk_test_123")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	card, err := g.Tokenize(ctx, "4242 4242 4242 4242")
	if err != nil || card.Token != "tok_4242" || card.Brand != "visa" || card.Last4 != "4242" || card.Fingerprint != "fp_4242" {
		t.Fatalf("tokenise: %+v %v", card, err)
	}
	_, err = g.Tokenize(ctx, "5555 5555 5555 4444")
	var invalid *gateway.InvalidCardError
	if !errors.As(err, &invalid) || invalid.Reason != "Your card is not supported." {
		t.Errorf("refused card: %v, want the processor's reason", err)
	}

	req := gateway.ChargeRequest{IdempotencyKey: "b-1", Card: card, AmountCents: 1950, Currency: "GBP"}
	first, err := g.Charge(ctx, req)
	if err != nil || !first.Approved || first.Reference != "ch_b-1" {
		t.Fatalf("charge: %+v %v", first, err)
	}
	again, err := g.Charge(ctx, req)
	if err != nil || again != first || len(f.charges) != 1 {
		t.Errorf("repeated charge: %+v %v, %d charges; want the first answer and one charge", again, err, len(f.charges))
	}

	declinedCard, _ := g.Tokenize(ctx, "4000000000000002")
	if declinedCard.Token != "tok_0002" || declinedCard.Fingerprint != "" {
		t.Errorf("a token answer without a fingerprint: %+v, want the token and no fingerprint", declinedCard)
	}
	declined, err := g.Charge(ctx, gateway.ChargeRequest{IdempotencyKey: "b-2", Card: declinedCard, AmountCents: 1950, Currency: "GBP"})
	if err != nil || declined.Approved || declined.DeclineCode != "card_declined" || declined.DeclineReason != "Do not honour." {
		t.Errorf("declined charge: %+v %v", declined, err)
	}
}

// TestHTTPGatewayOutageIsAnErrorNotADecline: a 503 must be retried by the caller, never turned
// into a failed booking; the retry with the same key charges once.
func TestHTTPGatewayOutageIsAnErrorNotADecline(t *testing.T) {
	f, url := newFakeProcessor(t)
	g, _ := gateway.NewHTTPGateway(url, "sk_test_123")
	f.unavailable = 2
	req := gateway.ChargeRequest{IdempotencyKey: "b-3", Card: event.Card{Brand: "visa", Last4: "4242", Token: "tok_4242"}, AmountCents: 100, Currency: "GBP"}
	for range 2 {
		if res, err := g.Charge(context.Background(), req); err == nil {
			t.Fatalf("503 answered as %+v, want an error", res)
		}
	}
	res, err := g.Charge(context.Background(), req)
	if err != nil || !res.Approved || f.chargeCalls != 3 || len(f.charges) != 1 {
		t.Errorf("after the outage: %+v %v (%d calls, %d charges)", res, err, f.chargeCalls, len(f.charges))
	}
}

func TestHTTPGatewayWrongKeyIsNotTheCardsFault(t *testing.T) {
	_, url := newFakeProcessor(t)
	g, _ := gateway.NewHTTPGateway(url, "sk_wrong")
	_, err := g.Tokenize(context.Background(), "4242424242424242")
	var invalid *gateway.InvalidCardError
	if err == nil || errors.As(err, &invalid) || !strings.Contains(err.Error(), "API key") {
		t.Errorf("wrong key: %v, want an error about the key, not the card", err)
	}
	if _, err := gateway.NewHTTPGateway("processor.example", "k"); err == nil {
		t.Error("a URL without scheme was accepted")
	}
}

// TestHTTPGatewaySortsRefusalsFromMoments: a spent token (402) fails the payment, so the
// booking ends and frees its seats; a rate limit (429) is a moment to retry, not a bad card.
func TestHTTPGatewaySortsRefusalsFromMoments(t *testing.T) {
	f, url := newFakeProcessor(t)
	g, _ := gateway.NewHTTPGateway(url, "sk_test_123")
	ctx := context.Background()

	res, err := g.Charge(ctx, gateway.ChargeRequest{IdempotencyKey: "b-4", Card: event.Card{Token: "tok_spent"}, AmountCents: 100, Currency: "GBP"})
	if err != nil || res.Approved || res.DeclineCode != gateway.DeclineProcessing || !strings.Contains(res.DeclineReason, "already used") {
		t.Errorf("spent token: %+v %v, want a processing decline with the reason", res, err)
	}

	f.mu.Lock()
	f.unavailable = 1
	f.mu.Unlock()
	_, err = g.Tokenize(ctx, "4242424242424242")
	var invalid *gateway.InvalidCardError
	if err == nil || errors.As(err, &invalid) {
		t.Errorf("rate limited: %v, want a retryable error, not an invalid card", err)
	}
}

// TestHTTPGatewayNeverFollowsARedirect: following one would resend the card number to
// wherever it points.
func TestHTTPGatewayNeverFollowsARedirect(t *testing.T) {
	f, base := newFakeProcessor(t)
	g, err := gateway.NewHTTPGateway(base+"/moved", "sk_test_123")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Tokenize(context.Background(), "4242424242424242"); err == nil || !strings.Contains(err.Error(), "not followed") {
		t.Errorf("redirect: %v, want an error saying it was not followed", err)
	}
	if f.tokenCalls != 0 {
		t.Errorf("the card number was sent on to the redirect's target %d time(s)", f.tokenCalls)
	}
}

// TestHTTPGatewayRefundsOnceAndReportsRefusals: a refund is made once per key, an outage is an
// error to retry, and a refund the processor will never make is a RefundRefusedError.
func TestHTTPGatewayRefundsOnceAndReportsRefusals(t *testing.T) {
	f, url := newFakeProcessor(t)
	g, _ := gateway.NewHTTPGateway(url, "sk_test_123")
	ctx := context.Background()
	charge, err := g.Charge(ctx, gateway.ChargeRequest{IdempotencyKey: "b-5", Card: event.Card{Token: "tok_4242"}, AmountCents: 100, Currency: "GBP"})
	if err != nil || !charge.Approved {
		t.Fatalf("charge: %+v %v", charge, err)
	}
	req := gateway.RefundRequest{IdempotencyKey: "refund/b-5", ChargeReference: charge.Reference, AmountCents: 100, Currency: "GBP"}

	f.mu.Lock()
	f.unavailable = 1
	f.mu.Unlock()
	var refused *gateway.RefundRefusedError
	if _, err := g.Refund(ctx, req); err == nil || errors.As(err, &refused) {
		t.Errorf("502: %v, want a retryable error", err)
	}
	first, err := g.Refund(ctx, req)
	if err != nil || first.Reference != "re_refund/b-5" {
		t.Fatalf("refund: %+v %v", first, err)
	}
	again, err := g.Refund(ctx, req)
	if err != nil || again != first || len(f.refunds) != 1 {
		t.Errorf("repeated refund: %+v %v (%d refunds); want the first answer", again, err, len(f.refunds))
	}
	_, err = g.Refund(ctx, gateway.RefundRequest{IdempotencyKey: "other", ChargeReference: charge.Reference, AmountCents: 100})
	if !errors.As(err, &refused) || !strings.Contains(refused.Reason, "cannot be refunded") {
		t.Errorf("second refund of one charge under another key: %v, want a refusal with the processor's reason", err)
	}
}
