package web

import (
	"testing"
	"time"
)

// TestRateLimiterRefillsOverTheMinute: a client gets its burst, then one request per
// 60/perMinute seconds; other clients are not affected; 0 turns limiting off.
func TestRateLimiterRefillsOverTheMinute(t *testing.T) {
	now := time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)
	l := newRateLimiter(3, func() time.Time { return now })
	for i := range 3 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > 20*time.Second {
		t.Fatalf("fourth request: allowed=%v wait %v, want refused with a wait of up to 20 s", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Error("another client was limited by the first one's requests")
	}
	now = now.Add(wait)
	if ok, _ := l.allow("a"); !ok {
		t.Errorf("refused again after waiting the %v it was told", wait)
	}
	if ok, _ := l.allow("a"); ok {
		t.Error("two requests allowed for one token's wait")
	}
	off := newRateLimiter(0, func() time.Time { return now })
	for range 1000 {
		if ok, _ := off.allow("a"); !ok {
			t.Fatal("a limit of 0 refused a request")
		}
	}
}
