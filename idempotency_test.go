package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/boxoffice/boxoffice/services/event"
)

// bookWithKey posts a booking request with an Idempotency-Key header, as a script without a
// session.
func (c *cluster) bookWithKey(key string, body map[string]any) (int, bookingResponse, http.Header) {
	c.t.Helper()
	return c.bookAs(apiClient{}, key, body)
}

// TestIdempotencyKeyBooksOnce: the same key and body, sent again or many times at once, answer
// with the first booking; a key reused for another request is refused; nothing extra reaches
// Kafka or the seat map.
func TestIdempotencyKeyBooksOnce(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	before := topicEndOffset(t, c.kc, event.TopicBookingMovie)
	body := request(show.ID, []string{"K11", "K12"}, cardApproves)

	const key = "3f1c0e4e-retry-test-key"
	var wg sync.WaitGroup
	ids := make(chan string, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, resp, _ := c.bookWithKey(key, body)
			if status != http.StatusAccepted {
				t.Errorf("%d %+v", status, resp)
			}
			ids <- resp.BookingID
		}()
	}
	wg.Wait()
	close(ids)
	first := ""
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Errorf("the same key made bookings %s and %s", first, id)
		}
	}
	status, again, headers := c.bookWithKey(key, body)
	if status != http.StatusAccepted || again.BookingID != first || again.StatusURL != c.statusPath(first) || headers.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a retry: %d %+v replayed=%q, want the first booking's answer", status, again, headers.Get("Idempotent-Replayed"))
	}
	if st := c.waitFinal(first); st.Status != "ticketed" {
		t.Errorf("the booking: %q", st.Status)
	}

	other := request(show.ID, []string{"K13"}, cardApproves)
	status, refused, _ := c.bookWithKey(key, other)
	if status != http.StatusUnprocessableEntity || refused.Field != "idempotency_key" {
		t.Errorf("key reused for another request: %d %+v, want 422 naming idempotency_key", status, refused)
	}
	if after := topicEndOffset(t, c.kc, event.TopicBookingMovie); after != before+1 {
		t.Errorf("booking-movie grew by %d messages, want 1", after-before)
	}
	var bookings int
	if err := c.db().Get(&bookings, `SELECT count(*) FROM web.bookings`); err != nil || bookings != 1 {
		t.Errorf("%d bookings recorded (err %v), want 1", bookings, err)
	}
}

// TestBookPressedTwiceBooksOnce: the form carries a key of its own, so pressing Book twice (or
// resubmitting after a reload) lands on the same booking.
func TestBookPressedTwiceBooksOnce(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	client, page := c.formSession(show.ID)
	m := regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the seat map's form has no idempotency key")
	}
	form := url.Values{"show_id": {show.ID}, "seats": {"J9"}, "name": {"Grace Hopper"}, "phone": {"07700 900456"},
		"card_number": {cardApproves}, "idempotency_key": {m[1]}, "csrf_token": {csrfOf(t, page)}}
	var locations []string
	for range 2 {
		resp, err := client.PostForm(c.web.url+"/bookings", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		locations = append(locations, resp.Header.Get("Location"))
	}
	if locations[0] == "" || locations[0] != locations[1] {
		t.Fatalf("two presses went to %v, want the same booking", locations)
	}
	booked, _ := url.Parse(locations[0])
	if st := c.waitFinal(strings.TrimPrefix(booked.Path, "/bookings/")); st.Status != "ticketed" {
		t.Errorf("the booking: %q %q", st.Status, st.Reason)
	}
	_, fresh := c.getPage("/shows/" + show.ID)
	if n := regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`).FindStringSubmatch(fresh); n == nil || n[1] == m[1] {
		t.Errorf("a new visit to the seat map reuses the key %v", n)
	}
}

// apiClient is how a script reaches the API: with a browser session's cookie, or none, and
// (behind a trusted proxy) from the address the proxy forwards.
type apiClient struct {
	session   string
	forwarded string
}

// bookAs posts a booking request with an Idempotency-Key header as the client.
func (c *cluster) bookAs(who apiClient, key string, body map[string]any) (int, bookingResponse, http.Header) {
	c.t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, c.web.url+"/api/bookings", strings.NewReader(string(raw)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	if who.session != "" {
		req.AddCookie(&http.Cookie{Name: "boxoffice_session", Value: who.session})
	}
	if who.forwarded != "" {
		req.Header.Set("X-Forwarded-For", who.forwarded)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bookingResponse
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

// TestIdempotencyKeyBelongsToItsClient: a key is the client's that first used it — its browser
// session, or its address for a script without one. Another client sending the same key and
// body makes a booking of its own and never gets the first client's id or token back; the first
// client repeating still gets its own booking.
func TestIdempotencyKeyBelongsToItsClient(t *testing.T) {
	c := newCluster(t)
	c.startWith(TargetAll, map[string]string{"TRUSTED_PROXIES": "127.0.0.1/32"})
	show := c.futureShow()
	body := request(show.ID, []string{"H3", "H4"}, cardApproves)
	const key = "7d0e4c2a-shared-key"

	clients := map[string]apiClient{
		"session A":                 {session: "AAAAAAAAAAAAAAAAAAAAAA", forwarded: "198.51.100.7"},
		"session B, same address":   {session: "BBBBBBBBBBBBBBBBBBBBBB", forwarded: "198.51.100.7"},
		"no session, same address":  {forwarded: "198.51.100.7"},
		"no session, other address": {forwarded: "203.0.113.9"},
	}
	order := []string{"session A", "session B, same address", "no session, same address", "no session, other address"}
	first := map[string]bookingResponse{}
	for _, name := range order {
		status, resp, headers := c.bookAs(clients[name], key, body)
		if status != http.StatusAccepted || resp.BookingID == "" || headers.Get("Idempotent-Replayed") != "" {
			t.Fatalf("%s, first use of the key: %d %+v replayed=%q, want a new booking", name, status, resp, headers.Get("Idempotent-Replayed"))
		}
		for other, theirs := range first {
			if resp.BookingID == theirs.BookingID || strings.Contains(resp.StatusURL, c.token(theirs.BookingID)) {
				t.Errorf("%s got %s's booking %s back (%s)", name, other, theirs.BookingID, resp.StatusURL)
			}
		}
		if resp.StatusURL != c.statusPath(resp.BookingID) {
			t.Errorf("%s: status_url %q, want its own booking's", name, resp.StatusURL)
		}
		first[name] = resp
	}
	for _, name := range order {
		status, again, headers := c.bookAs(clients[name], key, body)
		if status != http.StatusAccepted || again.BookingID != first[name].BookingID || headers.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s repeating: %d %+v replayed=%q, want its own booking %s", name, status, again, headers.Get("Idempotent-Replayed"), first[name].BookingID)
		}
	}
	// Within one client the key still names one request.
	status, refused, _ := c.bookAs(clients["session B, same address"], key, request(show.ID, []string{"H5"}, cardApproves))
	if status != http.StatusUnprocessableEntity || refused.Field != "idempotency_key" {
		t.Errorf("session B reusing its key for another request: %d %+v, want 422 naming idempotency_key", status, refused)
	}
	// The first booking has the seats; the others are ordinary requests for seats now taken.
	if st := c.waitFinal(first["session A"].BookingID); st.Status != "ticketed" {
		t.Errorf("session A's booking: %q %q", st.Status, st.Reason)
	}
	if st := c.waitFinal(first["no session, other address"].BookingID); st.Status != "rejected" || !strings.Contains(st.Reason, "already taken") {
		t.Errorf("the other address's booking: %q %q, want rejected as taken", st.Status, st.Reason)
	}
}
