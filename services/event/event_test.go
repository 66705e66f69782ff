package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	want := BookingRejected{ShowID: "ldn-1-20261127-1930", Seats: []string{"A1"}, Code: RejectSeatTaken, Reason: "Seat A1 is already taken."}
	env, err := New(TypeBookingRejected, "0b7c6f58-0c36-4d7e-9a9d-3c1d0f0c1f00", want, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(env.ID) != 36 || env.ID[14] != '7' {
		t.Errorf("event id %q is not a UUIDv7", env.ID)
	}
	raw, _ := jsonMarshal(env)
	got, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	var payload BookingRejected
	if err := got.Decode(&payload); err != nil {
		t.Fatal(err)
	}
	if payload.Reason != want.Reason || got.Type != TypeBookingRejected || got.SchemaVersion != CurrentSchemaVersion {
		t.Errorf("round trip: %+v %+v", got, payload)
	}
}

// TestDecodeRefusesWhatNoConsumerCanUse: such messages are dead-lettered, not retried forever.
func TestDecodeRefusesWhatNoConsumerCanUse(t *testing.T) {
	for name, raw := range map[string]string{
		"not json":       `{"event_id":`,
		"no id":          `{"type":"x","booking_id":"0b7c6f58-0c36-4d7e-9a9d-3c1d0f0c1f00","schema_version":1}`,
		"no type":        `{"event_id":"e","booking_id":"0b7c6f58-0c36-4d7e-9a9d-3c1d0f0c1f00","schema_version":1}`,
		"booking not id": `{"event_id":"e","type":"x","booking_id":"42","schema_version":1}`,
		"future version": `{"event_id":"e","type":"x","booking_id":"0b7c6f58-0c36-4d7e-9a9d-3c1d0f0c1f00","schema_version":2}`,
	} {
		if _, err := Decode([]byte(raw)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, err)
		}
	}
}

func TestMaskPhoneKeepsOnlyTheLastThreeDigits(t *testing.T) {
	for in, want := range map[string]string{"+44 7700 900123": "•••••••••123", "123": "•••", "": ""} {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
		if in != "" && strings.Contains(MaskPhone(in), "7700") {
			t.Errorf("MaskPhone(%q) leaks digits", in)
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// TestInZoneShowsTheTheatresClock: a show's time is shown on its theatre's clock, the same on
// every call (the zones are cached), and an unknown zone leaves it in UTC rather than failing.
func TestInZoneShowsTheTheatresClock(t *testing.T) {
	at := time.Date(2026, 7, 1, 18, 30, 0, 0, time.UTC)
	for range 2 {
		if got := InZone(at, "Europe/London").Format("15:04 MST"); got != "19:30 BST" {
			t.Errorf("18:30 UTC in London on 1 July: %s, want 19:30 BST", got)
		}
		if got := InZone(at, "Asia/Kolkata").Format("15:04"); got != "00:00" {
			t.Errorf("18:30 UTC in Kolkata: %s, want 00:00", got)
		}
		if got := InZone(at, "Nowhere/Atlantis"); got.Location() != time.UTC || !got.Equal(at) {
			t.Errorf("an unknown zone gave %v, want the time in UTC", got)
		}
	}
}

// TestBuyerKeysAreOptional: a request from before the seat caps (no buyer, no fingerprint)
// still decodes, and one without them is written as before.
func TestBuyerKeysAreOptional(t *testing.T) {
	old := `{"show_id":"s","seats":["A1"],"customer_name":"Ada","phone":"+447700900123",
		"card":{"brand":"visa","last4":"4242","token":"tok"},"requested_at":"2026-11-25T12:00:00Z"}`
	var req BookingRequested
	if err := json.Unmarshal([]byte(old), &req); err != nil || req.Card.Token != "tok" || req.Buyer != (Buyer{}) || req.Card.Fingerprint != "" {
		t.Fatalf("an old request: %+v %v", req, err)
	}
	raw, err := json.Marshal(req)
	if err != nil || strings.Contains(string(raw), "buyer") || strings.Contains(string(raw), "fingerprint") {
		t.Errorf("a request without buyer keys is written as %s (err %v)", raw, err)
	}
	req.Buyer.Phone, req.Card.Fingerprint = "k", "fp"
	var again BookingRequested
	if raw, err = json.Marshal(req); err == nil {
		err = json.Unmarshal(raw, &again)
	}
	if err != nil || again.Buyer.Phone != "k" || again.Card.Fingerprint != "fp" {
		t.Errorf("buyer keys round trip: %+v %v", again, err)
	}
}
