// Package providerhttp is the one JSON-over-HTTP exchange Boxoffice's provider adapters (the
// card processor, the SMS provider) make, so both treat URLs, statuses, keys and errors alike.
package providerhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// ParseBaseURL checks a provider's base URL: https, or plain http only to this machine (a
// local fake provider), since the requests carry keys and card numbers.
func ParseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("%q: want https://host[:port]", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("%s: plain http is only for a provider on this machine; use https", u.Redacted())
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NewClient returns the HTTP client for a provider: bounded in time, and never following a
// redirect, which would resend the body (a card number) to wherever it points.
func NewClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// IsRefusal reports whether a 4xx is the provider's final word on this request — this card,
// this number — rather than a passing moment (408, 409, 425, 429) or our own configuration
// (401, 403, 404): those are worth retrying once fixed, and no customer's fault.
func IsRefusal(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests,
		http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return false
	}
	return status >= 400 && status < 500
}

// PostJSON sends body as JSON with a bearer key and, if given, an Idempotency-Key header, and
// decodes a 2xx answer into out. It returns the status and, for a 4xx, the provider's message
// ({"error":{"message"}}); a transport failure, a redirect or a 5xx is an error, worth retrying.
// Errors name the endpoint without its credentials and never include the request body.
func PostJSON(ctx context.Context, client *http.Client, endpoint *url.URL, apiKey, idempotencyKey string, body, out any) (int, string, error) {
	where := endpoint.Redacted()
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: encode request: %w", where, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), bytes.NewReader(raw))
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: %w", where, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // its message repeats the URL, credentials and all
		}
		return 0, "", fmt.Errorf("POST %s: %w", where, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: read answer: %w", where, err)
	}
	switch {
	case resp.StatusCode >= 500:
		return resp.StatusCode, "", fmt.Errorf("POST %s: provider error %d", where, resp.StatusCode)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, "", fmt.Errorf("POST %s: redirected (%d) to %q; not followed", where, resp.StatusCode, resp.Header.Get("Location"))
	case resp.StatusCode >= 400:
		var problem struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &problem) != nil || problem.Error.Message == "" {
			problem.Error.Message = fmt.Sprintf("refused with status %d", resp.StatusCode)
		}
		return resp.StatusCode, problem.Error.Message, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, "", fmt.Errorf("POST %s: unreadable answer: %w", where, err)
	}
	return resp.StatusCode, "", nil
}
