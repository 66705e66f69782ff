package main

// What a stranger can no longer learn or do: other people's texts, the operations view and
// metrics, folder listings, and bytes that are not text. See README "Closed to strangers".

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestStrangersSeeNoOnesTexts: the sandbox SMS inbox shows a browser the texts of its own
// bookings, a script those of the booking whose token it holds, staff every text, and a
// stranger none, even asking by phone number.
func TestStrangersSeeNoOnesTexts(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	browser, page := c.formSession(show.ID)
	resp, err := browser.PostForm(c.web.url+"/bookings", url.Values{"show_id": {show.ID}, "seats": {"J1"}, "name": {"Grace Hopper"},
		"phone": {"07700 900456"}, "card_number": {cardApproves}, "csrf_token": {csrfOf(t, page)}, "idempotency_key": {"texts-browser-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	location, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("booking from the form: %d", resp.StatusCode)
	}
	fromBrowser := strings.TrimPrefix(location.Path, "/bookings/")
	fromScript := c.mustBook(show.ID, []string{"J2"}, cardApproves).BookingID
	c.waitFinal(fromBrowser)
	c.waitFinal(fromScript)
	const browserPhone, scriptPhone = "07700900456", normalizedPhone
	eventually(t, "both texts delivered", func() bool {
		_, all := c.staffPage("/api/dev/sms")
		return strings.Contains(all, browserPhone) && strings.Contains(all, scriptPhone)
	})

	for _, path := range []string{"/dev/sms", "/api/dev/sms", "/api/dev/sms?phone=" + url.QueryEscape(scriptPhone), "/dev/sms?phone=" + browserPhone} {
		status, body := c.getPage(path)
		if status != http.StatusOK || strings.Contains(body, "sms-body") || strings.Contains(body, `"body"`) || strings.Contains(body, show.MovieTitle) {
			t.Errorf("a stranger's GET %s: %d, shows someone's text: %.300s", path, status, body)
		}
	}
	resp, err = browser.Get(c.web.url + "/dev/sms")
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(mine), browserPhone) || strings.Contains(string(mine), scriptPhone) {
		t.Errorf("the booking browser's inbox: shows its own text %v, shows the script's %v; want only its own",
			strings.Contains(string(mine), browserPhone), strings.Contains(string(mine), scriptPhone))
	}
	_, scripts := c.getPage("/api/dev/sms?booking=" + fromScript + "&token=" + c.token(fromScript))
	if !strings.Contains(scripts, scriptPhone) || strings.Contains(scripts, browserPhone) {
		t.Errorf("the script's inbox with its booking's token: %.300s, want only its own text", scripts)
	}
	if _, forged := c.getPage("/api/dev/sms?booking=" + fromScript + "&token=" + c.token(fromBrowser)); strings.Contains(forged, scriptPhone) {
		t.Error("another booking's token shows the script's text")
	}
	if _, staff := c.staffPage("/dev/sms"); !strings.Contains(staff, browserPhone) || !strings.Contains(staff, scriptPhone) {
		t.Error("door staff do not see every text")
	}
}

// TestOperationsAreForStaff: the operations view and metrics answer strangers 403 on the public
// port, staff with the door key, and anyone on the internal port (OPS_ADDR); the static folder
// lists nothing.
func TestOperationsAreForStaff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsAddr := ln.Addr().String()
	ln.Close()
	c := newCluster(t)
	c.startWith(TargetAll, map[string]string{"OPS_ADDR": opsAddr})
	for _, path := range []string{"/ops", "/api/ops", "/metrics", "/ops/events"} {
		if status, body := c.getPage(path); status != http.StatusForbidden || strings.Contains(body, "boxoffice_") || !strings.Contains(body, "staff") {
			t.Errorf("a stranger's GET %s: %d %.200s, want 403 saying it is for staff", path, status, body)
		}
		req, _ := http.NewRequest(http.MethodGet, c.web.url+path, nil)
		req.Header.Set("Authorization", "Bearer not-the-door-key")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s with a wrong door key: %v %v, want 403", path, resp.StatusCode, err)
		} else {
			resp.Body.Close()
		}
	}
	if status, body := c.staffPage("/metrics"); status != http.StatusOK || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Errorf("staff's GET /metrics: %d", status)
	}
	for _, path := range []string{"/metrics", "/api/ops", "/ops", "/readyz"} {
		resp, err := http.Get("http://" + opsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s on OPS_ADDR: %d, want 200 without signing in", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/static/", "/static/app.css/"} {
		if status, body := c.getPage(path); status != http.StatusNotFound || strings.Contains(body, "htmx-2") {
			t.Errorf("GET %s: %d, want 404 and no listing", path, status)
		}
	}
	if status, _ := c.getPage("/static/app.css"); status != http.StatusOK {
		t.Errorf("GET /static/app.css: %d", status)
	}
}

// TestBytesThatAreNotTextAreRefused: a NUL or invalid UTF-8 in an id or a query value answers
// 400 with the reason on every route that reads one, and logs no error: nothing reaches
// PostgreSQL.
func TestBytesThatAreNotTextAreRefused(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	for _, path := range []string{
		"/shows/%00", "/shows/%FF", "/movies/%00", "/movies/orbital-decay?day=%FF", "/api/shows?movie_id=%FF",
		"/api/shows?movie_id=%00", "/api/shows/%00/seats", "/shows/%FF/seats/events", "/dev/sms?phone=%00",
		"/api/dev/sms?phone=%FF", "/bookings/%00", "/api/bookings/%FF?token=%00", "/bookings/%00/ticket",
		"/api/tickets/%00", "/tickets/verify?code=%00", "/api/tickets/verify?code=%FF", "/shows/" + show.ID + "?x%00=1",
	} {
		status, body := c.getPage(path)
		if status != http.StatusBadRequest || !strings.Contains(body, "not text") {
			t.Errorf("GET %s: %d %.200s, want 400 saying the address is not text", path, status, body)
		}
	}
	if logs := c.web.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("refusing bytes that are not text logged an error:\n%s", logs)
	}
}

// TestNamesThatLieAboutThemselvesAreRefused: a name with a right-to-left override, a zero-width
// space or a line separator is refused with a message saying so, at the API and in the form,
// and nothing is booked; a name in any real script books.
func TestNamesThatLieAboutThemselvesAreRefused(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	for _, name := range []string{"Ada \u202eecalevoL", "A\u200bda Lovelace", "Ada\u2028Lovelace"} {
		req := request(show.ID, []string{"L1"}, cardApproves)
		req["name"] = name
		status, resp := c.book(req)
		if status != http.StatusUnprocessableEntity || resp.Field != "name" || !strings.Contains(resp.Message, "invisible characters") {
			t.Errorf("booking as %+q: %d %+v, want 422 naming the invisible characters in the name", name, status, resp)
		}
	}
	browser, page := c.formSession(show.ID)
	resp, err := browser.PostForm(c.web.url+"/bookings", url.Values{"show_id": {show.ID}, "seats": {"L1"}, "name": {"Ada \u202eecalevoL"},
		"phone": {customerPhone}, "card_number": {cardApproves}, "csrf_token": {csrfOf(t, page)}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), "invisible characters") {
		t.Errorf("the form with an overridden name: %d, want 422 with the name's message beside it", resp.StatusCode)
	}
	var recorded int
	if err := c.db().Get(&recorded, `SELECT count(*) FROM web.bookings`); err != nil || recorded != 0 {
		t.Errorf("%d bookings recorded (%v), want none", recorded, err)
	}
	req := request(show.ID, []string{"L2"}, cardApproves)
	req["name"] = "محمد\u200cرضا Ångström"
	status, booked2 := c.book(req)
	if status != http.StatusAccepted {
		t.Fatalf("a Persian name with its non-joiner: %d %+v, want 202", status, booked2)
	}
	if st := c.waitFinal(booked2.BookingID); st.Status != "ticketed" {
		t.Errorf("a Persian name with its non-joiner: %q, want ticketed", st.Status)
	}
}
