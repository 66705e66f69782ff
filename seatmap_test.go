package main

import (
	"bufio"
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// followSSE opens a stream that does not end by itself and hands over its events as they come,
// until the test ends.
func followSSE(t *testing.T, streamURL string) <-chan sseEvent {
	t.Helper()
	return followSSEAfter(t, streamURL, "")
}

// followSSEAfter follows a stream as a browser reconnecting with Last-Event-ID does.
func followSSEAfter(t *testing.T, streamURL, lastEventID string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, streamURL, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s", streamURL, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(events)
		_ = readEvents(resp.Body, func(ev sseEvent) bool { events <- ev; return true })
	}()
	return events
}

// staysQuiet: a stream with nothing to send sends nothing for a second.
func staysQuiet(t *testing.T, what string, events <-chan sseEvent) {
	t.Helper()
	select {
	case ev := <-events:
		t.Errorf("%s sent %q (%.200s), want nothing: its map is up to date", what, ev.Name, ev.Data)
	case <-time.After(time.Second):
	}
}

// seatCells reads the seat cells in a seats event (or a page): label → "free", "held" or "sold".
func seatCells(fragment string) map[string]string {
	cells := map[string]string{}
	re := regexp.MustCompile(`(?s)<span id="cell-([A-Z][0-9]+)"[^>]*>(.*?)</span>`)
	for _, m := range re.FindAllStringSubmatch(fragment, -1) {
		state := "free"
		switch {
		case strings.Contains(m[2], "disabled") && strings.Contains(m[2], " held"):
			state = "held"
		case strings.Contains(m[2], "disabled"):
			state = "sold"
		}
		cells[m[1]] = state
	}
	return cells
}

// waitSeats reads seats events until the named seats are in the wanted states, failing on
// anything but seats events or on a timeout.
func waitSeats(t *testing.T, events <-chan sseEvent, want map[string]string) {
	t.Helper()
	seen := map[string]string{}
	begin := time.Now()
	timeout := time.After(waitForOutcome)
	for {
		done := true
		for label, state := range want {
			done = done && seen[label] == state
		}
		if done {
			t.Logf("seat map showed %v %s after waiting", want, time.Since(begin).Round(time.Millisecond))
			return
		}
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the seat stream ended; seen %v, want %v", seen, want)
			}
			if ev.Name != "seats" {
				t.Fatalf("seat stream sent %q, want only seats events", ev.Name)
			}
			if !strings.Contains(ev.Data, `hx-swap-oob="true"`) {
				t.Fatalf("seats event without out-of-band cells: %.300s", ev.Data)
			}
			for label, state := range seatCells(ev.Data) {
				seen[label] = state
			}
		case <-timeout:
			t.Fatalf("after %s the seat stream showed %v, want %v", waitForOutcome, seen, want)
		}
	}
}

// TestLiveSeatMapFollowsEveryBooking: a seat map's stream shows a booking's seats held while it
// is paid for, sold once ticketed, and free again when the card is declined; a map that
// connects late (or reconnects) is sent what changed after its page was rendered; and
// choosing a seat the map had not yet shown taken says so at once.
func TestLiveSeatMapFollowsEveryBooking(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetBooking)
	// No payment service yet: bookings stay held.
	show := c.futureShow()

	status, page := c.getPage("/shows/" + show.ID)
	if status != http.StatusOK {
		t.Fatalf("show page: %d", status)
	}
	m := regexp.MustCompile(`sse-connect="(/shows/[^"]+/seats/events\?v=\d+&amp;t=\d+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the seat map has no sse-connect to its seat stream, with its version and render time")
	}
	pageStream := html.UnescapeString(m[1])
	// The same without the render time: only the seat versions decide what it is sent.
	versionOnly := pageStream[:strings.Index(pageStream, "&t=")]
	if cells := seatCells(page); cells["C5"] != "free" || cells["D1"] != "free" || len(cells) < 100 {
		t.Fatalf("the page's map has %d cells, C5 %q, D1 %q: want every seat, these free", len(cells), cells["C5"], cells["D1"])
	}
	events := followSSE(t, c.web.url+pageStream)

	held := c.mustBook(show.ID, []string{"C5", "C6"}, cardApproves)
	waitSeats(t, events, map[string]string{"C5": "held", "C6": "held"})
	declined := c.mustBook(show.ID, []string{"D1"}, cardDeclined)
	waitSeats(t, events, map[string]string{"D1": "held"})

	// A map rendered before all this, connecting now, is caught up, by the seat versions alone.
	late := followSSE(t, c.web.url+versionOnly)
	waitSeats(t, late, map[string]string{"C5": "held", "C6": "held", "D1": "held"})

	// A held booking says until when, as long as it is held.
	var st struct {
		Status        string     `json:"status"`
		HoldExpiresAt *time.Time `json:"hold_expires_at"`
	}
	eventually(t, "C5 and C6 confirmed", func() bool { c.getJSON(c.statusPath(held.BookingID), &st); return st.Status == "confirmed" })
	if st.HoldExpiresAt == nil || time.Until(*st.HoldExpiresAt) < 9*time.Minute || time.Until(*st.HoldExpiresAt) > 10*time.Minute {
		t.Errorf("held booking's hold_expires_at %v, want about 10 minutes from now", st.HoldExpiresAt)
	}

	// Someone picks C5 on a map that had not heard yet, and had D3 in their total.
	client, formPage := c.formSession(show.ID)
	form := url.Values{"csrf_token": {csrfOf(t, formPage)}, "seats": {"C5", "D3"}, "summary_seats": {"D3"}}
	resp, err := client.PostForm(c.web.url+"/shows/"+show.ID+"/summary", form)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Seat C5 has just been taken by someone else") ||
		!strings.Contains(body, `class="summary-seats">D3<`) || seatCells(body)["C5"] != "held" {
		t.Errorf("summary with a just-taken seat: %d\n%s\nwant it to say C5 was taken, total D3 only, and C5 shown held", resp.StatusCode, body)
	}

	// Payment and the rest start: C5 and C6 are sold, D1 is free again.
	c.start(TargetPayment)
	c.start(TargetNotification)
	c.start(TargetTicket)
	waitSeats(t, events, map[string]string{"C5": "sold", "C6": "sold", "D1": "free"})
	if st := c.waitFinal(held.BookingID); st.Status != "ticketed" {
		t.Fatalf("C5, C6: %q, want ticketed", st.Status)
	}
	if st := c.waitFinal(declined.BookingID); st.Status != "failed" {
		t.Fatalf("D1: %q, want failed", st.Status)
	}
	var seats struct {
		Seats []struct{ Label, State, Status string } `json:"seats"`
	}
	c.getJSON("/api/shows/"+show.ID+"/seats", &seats)
	for _, s := range seats.Seats {
		if want := map[string]string{"C5": "sold", "C6": "sold", "D1": "free"}[s.Label]; want != "" && s.Status != want {
			t.Errorf("GET /api/shows/…/seats: %s is %q, want %q", s.Label, s.Status, want)
		}
	}

	// A fresh page renders the map as it now stands, with a newer version: its stream has
	// nothing old to send.
	_, page = c.getPage("/shows/" + show.ID)
	if cells := seatCells(page); cells["C5"] != "sold" || cells["D1"] != "free" {
		t.Errorf("fresh page: C5 %q, D1 %q; want sold and free", cells["C5"], cells["D1"])
	}
	m2 := regexp.MustCompile(`seats/events\?v=(\d+)`).FindStringSubmatch(page)
	if m2 == nil || "?v="+m2[1] == versionOnly[strings.Index(versionOnly, "?"):] {
		t.Fatalf("the fresh page's seat stream version %v did not move on from %s", m2, versionOnly)
	}
	staysQuiet(t, "the fresh page's seat stream", followSSE(t, c.web.url+"/shows/"+show.ID+"/seats/events?v="+m2[1]))
	// A browser reconnecting says what it last got; an old page's URL then sends nothing it had.
	staysQuiet(t, "a seat stream resumed after the latest version", followSSEAfter(t, c.web.url+versionOnly, m2[1]))

	// An update redrew a free seat this person had chosen (on a reconnect, say): the total asked
	// for after the update ticks it again; asked for because they unticked it, it stays unticked.
	// Likewise when a click ticked another seat: one click changes one seat.
	for _, tc := range []struct {
		afterUpdate string
		ticked      []string
		kept        bool
	}{{"1", nil, true}, {"", nil, false}, {"", []string{"E7"}, true}} {
		form := url.Values{"csrf_token": {csrfOf(t, formPage)}, "summary_seats": {"E5"}, "after_update": {tc.afterUpdate}, "seats": tc.ticked}
		resp, err := client.PostForm(c.web.url+"/shows/"+show.ID+"/summary", form)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		kept := regexp.MustCompile(`class="summary-seats">[^<]*E5`).MatchString(body) && regexp.MustCompile(`id="seat-E5"[^>]*checked`).MatchString(body)
		if resp.StatusCode != http.StatusOK || kept != tc.kept {
			t.Errorf("summary after_update=%q ticked %v with E5 unticked: %d, E5 kept ticked %v, want %v\n%s", tc.afterUpdate, tc.ticked, resp.StatusCode, kept, tc.kept, body)
		}
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
