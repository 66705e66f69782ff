// Package providerhttp is the one JSON-over-HTTP exchange Boxoffice's provider adapters (the
// card processor, the SMS provider) make, so both treat statuses, keys and errors alike.
package providerhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// PostJSON sends body as JSON with a bearer key and, if given, an Idempotency-Key header, and
// decodes a 2xx answer into out. It returns the status and, for a 4xx, the provider's message
// ({"error":{"message"}}); a transport failure or a 5xx is an error, worth retrying.
func PostJSON(ctx context.Context, client *http.Client, endpoint, apiKey, idempotencyKey string, body, out any) (int, string, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, "", fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(raw))
	if err != nil {
		return 0, "", fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: read answer: %w", endpoint, err)
	}
	if resp.StatusCode >= 500 {
		return resp.StatusCode, "", fmt.Errorf("POST %s: provider error %d", endpoint, resp.StatusCode)
	}
	if resp.StatusCode >= 400 {
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
		return resp.StatusCode, "", fmt.Errorf("POST %s: unreadable answer: %w", endpoint, err)
	}
	return resp.StatusCode, "", nil
}
