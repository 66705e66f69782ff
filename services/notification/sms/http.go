package sms

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/boxoffice/boxoffice/services/providerhttp"
)

// HTTPSender sends texts through an SMS provider's JSON API:
//
//	POST /v1/messages  {"to","body"}  → 2xx {"id"}
//
// with "Authorization: Bearer <key>" and "Idempotency-Key: <Message.Key>". A 4xx (an invalid or
// unreachable number) is the provider's final "no" for that message; a 5xx or a timeout is
// retried.
type HTTPSender struct {
	endpoint *url.URL
	key      string
	client   *http.Client
}

// NewHTTPSender returns a sender for the provider at baseURL.
func NewHTTPSender(baseURL, apiKey string) (*HTTPSender, error) {
	u, err := providerhttp.ParseBaseURL(baseURL)
	if err != nil {
		return nil, fmt.Errorf("SMS provider URL %w", err)
	}
	return &HTTPSender{endpoint: u.JoinPath("/v1/messages"), key: apiKey, client: providerhttp.NewClient()}, nil
}

// Send delivers one text, once per key.
func (s *HTTPSender) Send(ctx context.Context, msg Message) (string, error) {
	if msg.Key == "" {
		return "", fmt.Errorf("sms: idempotency key required")
	}
	var out struct {
		ID string `json:"id"`
	}
	status, problem, err := providerhttp.PostJSON(ctx, s.client, s.endpoint, s.key, msg.Key,
		map[string]string{"to": msg.Phone, "body": msg.Body}, &out)
	switch {
	case err != nil:
		return "", err
	case providerhttp.IsRefusal(status):
		return "", &DeliveryError{Reason: problem}
	case status >= 400:
		return "", fmt.Errorf("sms provider answered %d: %s", status, problem)
	case out.ID == "":
		return "", fmt.Errorf("sms provider: answer without a message id")
	}
	return out.ID, nil
}
