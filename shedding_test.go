package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/services/event"
)

// TestOverdueBookingsTurnNewPressesAway: with the pipeline behind (here, nothing behind the web
// at all), the web takes bookings until more than a hundred of them are overdue, then refuses
// the next press at once with a 503 that says so, booking nothing; once the backend has answered
// the bookings it took, presses are taken again. Measured, it is what keeps an overload from
// collapsing into timeouts for everyone (web/backlog.go).
func TestOverdueBookingsTurnNewPressesAway(t *testing.T) {
	c := newCluster(t)
	c.startWith(TargetWeb, map[string]string{"BOOKING_SHED_AFTER": "1s"})
	shows := c.futureShows(2) // 60 seats each
	var taken []string
	for i := range 101 {
		show := shows[i/60]
		seat := fmt.Sprintf("%c%d", 'A'+i%60/10, i%10+1)
		taken = append(taken, c.mustBook(show.ID, []string{seat}, cardApproves).BookingID)
	}
	conn := c.db()
	time.Sleep(1100 * time.Millisecond) // all 101 overdue

	press := func() (int, string, bookingResponse) {
		body, _ := json.Marshal(request(shows[1].ID, []string{"F10"}, cardApproves))
		resp, err := http.Post(c.web.url+"/api/bookings", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out bookingResponse
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, resp.Header.Get("Retry-After"), out
	}
	status, retryAfter, refused := press()
	if status != http.StatusServiceUnavailable || refused.Error != "busy" || retryAfter == "" ||
		!strings.Contains(refused.Message, "Nothing was booked or charged") {
		t.Fatalf("a press with 101 bookings overdue: %d (Retry-After %q) %+v, want 503 busy with Retry-After and the reason", status, retryAfter, refused)
	}
	// A person pressing Book on the seat map gets the form back, with the reason on it.
	client, page := c.formSession(shows[1].ID)
	key := regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`).FindStringSubmatch(page)
	if key == nil {
		t.Fatal("the seat map's form has no idempotency key")
	}
	resp, err := client.PostForm(c.web.url+"/bookings", url.Values{"show_id": {shows[1].ID}, "seats": {"F9"}, "name": {"Grace Hopper"},
		"phone": {"07700 900456"}, "card_number": {cardApproves}, "idempotency_key": {key[1]}, "csrf_token": {csrfOf(t, page)}})
	if err != nil {
		t.Fatal(err)
	}
	formPage, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(formPage), htmlEscape("So many people are booking right now")) ||
		!strings.Contains(string(formPage), key[1]) {
		t.Errorf("the form pressed with 101 bookings overdue: %d, want 503 and the seat map again with the reason and the same key", resp.StatusCode)
	}
	var recorded int
	if err := conn.Get(&recorded, `SELECT count(*) FROM web.bookings`); err != nil {
		t.Fatal(err)
	}
	if end := topicEndOffset(t, c.kc, event.TopicBookingMovie); recorded != 101 || end != 101 {
		t.Errorf("after the refusal: %d bookings recorded and %d booking requests published, want the 101 taken only", recorded, end)
	}

	for _, target := range []string{TargetBooking, TargetPayment, TargetNotification, TargetTicket} {
		c.start(target)
	}
	for _, id := range taken {
		if st := c.waitFinal(id); st.Status != "ticketed" {
			t.Fatalf("booking %s taken before the refusals: %q, want ticketed", id, st.Status)
		}
	}
	var accepted bookingResponse
	eventually(t, "a press taken again once the bookings taken were answered", func() bool {
		status, _, accepted = press()
		return status == http.StatusAccepted
	})
	if st := c.waitFinal(accepted.BookingID); st.Status != "ticketed" {
		t.Errorf("the press taken again: %q, want ticketed", st.Status)
	}
}
