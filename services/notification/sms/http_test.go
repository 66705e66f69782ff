package sms_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/boxoffice/boxoffice/services/notification/sms"
)

// fakeProvider is a local stand-in for an SMS provider's API.
type fakeProvider struct {
	mu          sync.Mutex
	sent        map[string]string // idempotency key → message id
	unavailable int
}

func (f *fakeProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/v1/messages" || r.Header.Get("Authorization") != "Bearer key" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f.unavailable > 0 {
		f.unavailable--
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	var body struct{ To, Body string }
	_ = json.NewDecoder(r.Body).Decode(&body)
	if body.To == "+440000" {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"message": "The number is not a mobile."}})
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if _, ok := f.sent[key]; !ok {
		f.sent[key] = "SM" + key
	}
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]string{"id": f.sent[key]})
}

func TestHTTPSender(t *testing.T) {
	f := &fakeProvider{sent: map[string]string{}, unavailable: 1}
	srv := httptest.NewServer(f)
	defer srv.Close()
	sender, err := sms.NewHTTPSender(srv.URL, "key")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := sms.Message{Key: "b-1/booking_confirmed", Phone: "+447700900123", Body: "You're booked."}

	_, err = sender.Send(ctx, msg)
	var refused *sms.DeliveryError
	if err == nil || errors.As(err, &refused) {
		t.Errorf("provider outage: %v, want a retryable error, not a refusal", err)
	}
	id, err := sender.Send(ctx, msg)
	again, err2 := sender.Send(ctx, msg)
	if err != nil || err2 != nil || id == "" || again != id || len(f.sent) != 1 {
		t.Errorf("send twice: %q %q (%v %v), %d sent; want one message, same id", id, again, err, err2, len(f.sent))
	}
	_, err = sender.Send(ctx, sms.Message{Key: "b-2/booking_confirmed", Phone: "+440000", Body: "x"})
	if !errors.As(err, &refused) || refused.Reason != "The number is not a mobile." {
		t.Errorf("refused number: %v, want a DeliveryError with the provider's reason", err)
	}
}
