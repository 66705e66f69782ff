package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/providerhttp"
)

// HTTPGateway talks to a card processor over its JSON API, shaped like the common ones:
//
//	POST /v1/tokens   {"number"}                                 → 200 {"token","brand","last4","fingerprint"}
//	POST /v1/charges  {"token","amount","currency","description"} → 200 {"id","status","decline_code","decline_message"}
//	POST /v1/refunds  {"charge","amount","reason"}                → 200 {"id","status"}
//
// with "Authorization: Bearer <key>" and, on charges and refunds, an "Idempotency-Key" header. A 4xx with
// {"error":{"message"}} on a token request is a card the processor refuses; a 5xx, a timeout or
// an unreadable answer is an error worth retrying. The fingerprint (the same for every token of
// one card number) is optional: without it, the seat cap by card does not apply.
type HTTPGateway struct {
	base   *url.URL
	key    string
	client *http.Client
}

// NewHTTPGateway returns a gateway for the processor at baseURL.
func NewHTTPGateway(baseURL, apiKey string) (*HTTPGateway, error) {
	u, err := providerhttp.ParseBaseURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("payment processor URL %w", err)
	}
	return &HTTPGateway{base: u, key: apiKey, client: providerhttp.NewClient()}, nil
}

// Tokenize hands the card number to the processor and keeps only its token.
func (g *HTTPGateway) Tokenize(ctx context.Context, cardNumber string) (event.Card, error) {
	number := NormalizeCardNumber(cardNumber)
	if err := ValidateCardNumber(number); err != nil {
		return event.Card{}, err
	}
	var out struct {
		Token       string `json:"token"`
		Brand       string `json:"brand"`
		Last4       string `json:"last4"`
		Fingerprint string `json:"fingerprint"`
	}
	status, problem, err := g.post(ctx, "/v1/tokens", "", map[string]string{"number": number}, &out)
	switch {
	case err != nil:
		return event.Card{}, err
	case providerhttp.IsRefusal(status):
		return event.Card{}, &InvalidCardError{Reason: problem}
	case status >= 400:
		return event.Card{}, fmt.Errorf("payment processor answered %d (our API key or URL, or a passing limit; not the card): %s", status, problem)
	case out.Token == "" || len(out.Last4) != 4:
		return event.Card{}, fmt.Errorf("payment processor: token answer without token or last4")
	}
	return event.Card{Brand: strings.ToLower(out.Brand), Last4: out.Last4, Token: out.Token, Fingerprint: out.Fingerprint}, nil
}

// Charge asks the processor to charge a token once per idempotency key.
func (g *HTTPGateway) Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error) {
	if req.IdempotencyKey == "" {
		return ChargeResult{}, errors.New("charge: idempotency key required")
	}
	var out struct {
		ID             string `json:"id"`
		Status         string `json:"status"`
		DeclineCode    string `json:"decline_code"`
		DeclineMessage string `json:"decline_message"`
	}
	body := map[string]any{"token": req.Card.Token, "amount": req.AmountCents, "currency": req.Currency, "description": req.Description}
	status, problem, err := g.post(ctx, "/v1/charges", req.IdempotencyKey, body, &out)
	switch {
	case err != nil:
		return ChargeResult{}, err
	case providerhttp.IsRefusal(status):
		// The processor will never take this charge (a spent token, a 402): a failed payment,
		// so the booking ends and its seats are freed, rather than a retry that never ends.
		return ChargeResult{DeclineCode: DeclineProcessing,
			DeclineReason: "The payment could not be processed: " + event.ShortReason(problem)}, nil
	case status >= 400:
		return ChargeResult{}, fmt.Errorf("payment processor answered %d: %s", status, problem)
	}
	switch out.Status {
	case "succeeded":
		return ChargeResult{Approved: true, Reference: out.ID}, nil
	case "declined":
		reason := out.DeclineMessage
		if reason == "" {
			reason = "Your card was declined."
		}
		code := out.DeclineCode
		if code == "" {
			code = DeclineGeneric
		}
		return ChargeResult{Reference: out.ID, DeclineCode: code, DeclineReason: reason}, nil
	}
	return ChargeResult{}, fmt.Errorf("payment processor: unknown charge status %q", out.Status)
}

// Refund asks the processor to give a charge back in full, once per idempotency key. A refusal
// (a 4xx that retrying cannot change; see providerhttp.IsRefusal) is a *RefundRefusedError; any
// other failure is an error worth retrying.
func (g *HTTPGateway) Refund(ctx context.Context, req RefundRequest) (RefundResult, error) {
	if req.IdempotencyKey == "" {
		return RefundResult{}, errors.New("refund: idempotency key required")
	}
	var out struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	body := map[string]any{"charge": req.ChargeReference, "amount": req.AmountCents, "reason": req.Reason}
	status, problem, err := g.post(ctx, "/v1/refunds", req.IdempotencyKey, body, &out)
	switch {
	case err != nil:
		return RefundResult{}, err
	case providerhttp.IsRefusal(status):
		return RefundResult{}, &RefundRefusedError{Reason: event.ShortReason(problem)}
	case status >= 400:
		return RefundResult{}, fmt.Errorf("payment processor answered %d to a refund: %s", status, problem)
	case out.ID == "" || (out.Status != "succeeded" && out.Status != "pending"):
		// "pending" is a refund the processor accepted and will settle: the money is on its way back.
		return RefundResult{}, fmt.Errorf("payment processor: refund answer with id %q and status %q", out.ID, out.Status)
	}
	return RefundResult{Reference: out.ID}, nil
}

// post sends a JSON request. It returns the status and, for a 4xx, the processor's message; a
// transport failure or a 5xx is returned as an error.
func (g *HTTPGateway) post(ctx context.Context, path, idempotencyKey string, body, out any) (int, string, error) {
	return providerhttp.PostJSON(ctx, g.client, g.base.JoinPath(path), g.key, idempotencyKey, body, out)
}
