package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/boxoffice/boxoffice/services/event"
)

// TestPagesCarryAStrictContentSecurityPolicy: every page is served with a CSP that runs only
// scripts carrying this response's nonce and no inline styles, the page's scripts carry that
// nonce, and no element has an inline style the policy would block.
func TestPagesCarryAStrictContentSecurityPolicy(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	for _, path := range []string{"/", "/shows/" + show.ID, "/tickets/door", "/dev/sms", "/ops"} {
		req, _ := http.NewRequest(http.MethodGet, c.web.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+c.doorKey()) // /ops is for staff
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page := readBody(resp)
		csp := resp.Header.Get("Content-Security-Policy")
		nonce := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]{20,})' 'strict-dynamic'`).FindStringSubmatch(csp)
		if resp.StatusCode != http.StatusOK || nonce == nil || !strings.Contains(csp, "style-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: %d, CSP %q: want a nonce for scripts, styles from the site only, no framing", path, resp.StatusCode, csp)
			continue
		}
		scripts := regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1)
		for _, s := range scripts {
			if !strings.Contains(s, `nonce="`+nonce[1]+`"`) {
				t.Errorf("%s: %s runs without this response's nonce", path, s)
			}
		}
		if len(scripts) != 2 {
			t.Errorf("%s: %d script tags, want htmx and its SSE extension", path, len(scripts))
		}
		if strings.Contains(page, " style=") || strings.Contains(page, "<style") {
			t.Errorf("%s: an inline style the policy would block", path)
		}
		for header, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
			if got := resp.Header.Get(header); got != want {
				t.Errorf("%s: %s %q, want %q", path, header, got, want)
			}
		}
		if again, _ := http.Get(c.web.url + path); again != nil {
			if again.Header.Get("Content-Security-Policy") == csp {
				t.Errorf("%s: the same nonce twice: a nonce must be new for every response", path)
			}
			again.Body.Close()
		}
	}
}

// TestCrossSiteBookingIsRefused: a booking posted by another site's page (the browser says so in
// Sec-Fetch-Site and Origin) is refused with 403 and a reason, and nothing is booked; the same
// request from the site itself, or from a script, goes through.
func TestCrossSiteBookingIsRefused(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	before := topicEndOffset(t, c.kc, event.TopicBookingMovie)
	post := func(path, contentType, body string, headers map[string]string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, c.web.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(resp)
	}
	crossSite := map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
	apiBody := `{"show_id":"` + show.ID + `","seats":["L1"],"name":"Ada Lovelace","phone":"+44 7700 900123","card_number":"4242 4242 4242 4242"}`
	if status, body := post("/api/bookings", "application/json", apiBody, crossSite); status != http.StatusForbidden || !strings.Contains(body, `"cross_origin"`) {
		t.Errorf("cross-site API booking: %d %s, want 403 cross_origin", status, body)
	}
	form := "show_id=" + show.ID + "&seats=L2&name=Ada+Lovelace&phone=%2B447700900123&card_number=4242424242424242&idempotency_key=cross-site-test-key"
	if status, body := post("/bookings", "application/x-www-form-urlencoded", form, crossSite); status != http.StatusForbidden || !strings.Contains(body, "another site") {
		t.Errorf("cross-site form booking: %d, want 403 with the reason on the page", status)
	}
	if after := topicEndOffset(t, c.kc, event.TopicBookingMovie); after != before {
		t.Errorf("refused requests reached booking-movie: %d → %d", before, after)
	}
	if status, body := post("/api/bookings", "application/json", apiBody, map[string]string{"Sec-Fetch-Site": "same-origin"}); status != http.StatusAccepted {
		t.Errorf("same-site booking: %d %s, want 202", status, body)
	}
	if status, body := post("/api/bookings", "application/json", strings.Replace(apiBody, "L1", "L3", 1), nil); status != http.StatusAccepted {
		t.Errorf("booking from a script (no browser headers): %d %s, want 202", status, body)
	}
}

// TestBookingRequestsAreRateLimited: with BOOKING_RATE_LIMIT=3, a fourth request within the
// minute from one address is answered 429 with Retry-After and a reason, and never published.
func TestBookingRequestsAreRateLimited(t *testing.T) {
	c := newCluster(t)
	c.startWith(TargetAll, map[string]string{"BOOKING_RATE_LIMIT": "3"})
	show := c.futureShow()
	for i := range 3 {
		if status, resp := c.book(request(show.ID, []string{"H" + strconv.Itoa(i+1)}, cardApproves)); status != http.StatusAccepted {
			t.Fatalf("request %d: %d %+v", i+1, status, resp)
		}
	}
	// The three accepted requests reach the topic through the outbox, a moment later.
	eventually(t, "the accepted requests published", func() bool { return topicEndOffset(t, c.kc, event.TopicBookingMovie) == 3 })
	before := topicEndOffset(t, c.kc, event.TopicBookingMovie)
	raw := `{"show_id":"` + show.ID + `","seats":["H9"],"name":"Ada Lovelace","phone":"+44 7700 900123","card_number":"4242 4242 4242 4242"}`
	resp, err := http.Post(c.web.url+"/api/bookings", "application/json", strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(resp)
	retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || retry < 1 || retry > 60 || !strings.Contains(body, `"rate_limited"`) {
		t.Errorf("fourth request: %d Retry-After %q %s, want 429 with a wait of at most a minute", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if after := topicEndOffset(t, c.kc, event.TopicBookingMovie); after != before {
		t.Errorf("a refused request reached booking-movie: %d → %d", before, after)
	}
}

// readBody reads and closes a response body.
func readBody(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b)
}

// TestStrangersSeeNothingOfABooking: a booking's pages, API reads, event streams and ticket
// answer only with its token. A bare id, a forged token or another booking's token gets the same
// 404 as a booking that does not exist, and the answer names nobody.
func TestStrangersSeeNothingOfABooking(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	mine := c.mustBook(show.ID, []string{"L7"}, cardApproves)
	other := c.mustBook(show.ID, []string{"L8"}, cardApproves)
	st := c.waitFinal(mine.BookingID)
	c.waitFinal(other.BookingID)
	if st.Ticket == nil {
		t.Fatalf("booking %s: %q, want a ticket", mine.BookingID, st.Status)
	}
	id := mine.BookingID
	resources := []string{
		"/bookings/" + id, "/bookings/" + id + "/ticket", "/bookings/" + id + "/events", "/bookings/" + id + "/hold",
		"/api/bookings/" + id, "/api/bookings/" + id + "/events", "/api/tickets/" + st.Ticket.TicketID,
	}
	for _, path := range resources {
		for what, query := range map[string]string{
			"no token":              "",
			"a forged token":        "?token=AAAAAAAAAAAAAAAAAAAAAAAA",
			"another booking's one": "?token=" + c.token(other.BookingID),
		} {
			status, body := c.getPage(path + query)
			if status != http.StatusNotFound || strings.Contains(body, customerName) || strings.Contains(body, st.Ticket.Code) {
				t.Errorf("GET %s with %s: %d, want a 404 that names nobody", path, what, status)
			}
		}
		if strings.HasSuffix(path, "/events") {
			// Streams are followed below with the URLs the API gave; here only their caching.
			resp, err := http.Get(c.web.url + path + "?token=" + c.token(id))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("GET %s with its token: %d, Cache-Control %q, want 200 and no-store", path, resp.StatusCode, resp.Header.Get("Cache-Control"))
			}
			continue
		}
		resp, err := http.Get(c.web.url + path + "?token=" + c.token(id))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s with its token: Cache-Control %q, want no-store: no cache may keep it", path, resp.Header.Get("Cache-Control"))
		}
		if status := resp.StatusCode; status != http.StatusOK {
			t.Errorf("GET %s with its token: %d, want 200", path, status)
		}
	}
	if names := eventNames(readSSE(t, c.web.url+mine.EventsURL, "")); len(names) < 2 || names[len(names)-1] != "close" {
		t.Errorf("the events_url the API returned: %v, want the stages and the close event", names)
	}
	var got apiStatus
	if status := c.getJSON(mine.StatusURL, &got); status != http.StatusOK || got.Status != "ticketed" {
		t.Errorf("the status_url the API returned: %d %q", status, got.Status)
	}
}

// TestMyBookingsListsThisBrowsersBookings: bookings made from a browser are listed on its "My
// bookings" page, each linking to its status page (token included), remembered in an HttpOnly,
// SameSite=Lax cookie; another browser sees none of them, and a forged entry is ignored.
func TestMyBookingsListsThisBrowsersBookings(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	browser, showPage := c.formSession(show.ID)
	var ids []string
	for _, seat := range []string{"J10", "J11"} {
		form := url.Values{"show_id": {show.ID}, "seats": {seat}, "name": {"Grace Hopper"}, "phone": {"07700 900456"},
			"card_number": {cardApproves}, "idempotency_key": {"my-bookings-" + seat}, "csrf_token": {csrfOf(t, showPage)}}
		resp, err := browser.PostForm(c.web.url+"/bookings", form)
		if err != nil {
			t.Fatal(err)
		}
		readBody(resp)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("booking %s: %d", seat, resp.StatusCode)
		}
		var remembered *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "boxoffice_bookings" {
				remembered = ck
			}
		}
		if remembered == nil || !remembered.HttpOnly || remembered.SameSite != http.SameSiteLaxMode || remembered.Path != "/" {
			t.Fatalf("the booking cookie: %+v, want HttpOnly, SameSite=Lax, Path=/", remembered)
		}
		location, _ := url.Parse(resp.Header.Get("Location"))
		ids = append(ids, strings.TrimPrefix(location.Path, "/bookings/"))
	}
	for _, id := range ids {
		c.waitFinal(id)
	}
	resp, err := browser.Get(c.web.url + "/bookings")
	if err != nil {
		t.Fatal(err)
	}
	page := readBody(resp)
	links := regexp.MustCompile(`href="(/bookings/[0-9a-f-]{36}\?token=[A-Za-z0-9_-]+)"`).FindAllStringSubmatch(page, -1)
	if resp.StatusCode != http.StatusOK || len(links) != 2 || !strings.Contains(links[0][1], ids[1]) || !strings.Contains(page, "J11") ||
		!strings.Contains(page, "J10") || !strings.Contains(page, "Ticket issued") {
		t.Fatalf("My bookings: %d with %d links, want both bookings newest first, ticketed", resp.StatusCode, len(links))
	}
	if status, _ := c.getPage(strings.ReplaceAll(links[1][1], "&amp;", "&")); status != http.StatusOK {
		t.Errorf("the listed link %s: %d", links[1][1], status)
	}

	if status, other := c.getPage("/bookings"); status != http.StatusOK || strings.Contains(other, ids[0]) || !strings.Contains(other, "No bookings from this browser yet") {
		t.Errorf("another browser's My bookings: %d, want none of them", status)
	}
	req, _ := http.NewRequest(http.MethodGet, c.web.url+"/bookings", nil)
	req.AddCookie(&http.Cookie{Name: "boxoffice_bookings", Value: ids[0] + ".AAAAAAAAAAAAAAAAAAAAAAAA"})
	forged, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if page := readBody(forged); strings.Contains(page, ids[0]) {
		t.Error("a forged cookie entry listed a booking")
	}
}

// TestFormsNeedTheSessionsToken: the booking form and the htmx requests of the seat map carry a
// token bound to the browser's session (an HttpOnly, SameSite=Lax cookie); a post without it, or
// with another session's, is refused with 403 and the reason, and books nothing.
func TestFormsNeedTheSessionsToken(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	browser, page := c.formSession(show.ID)
	token := csrfOf(t, page)
	if !strings.Contains(page, `hx-headers="{&#34;X-CSRF-Token&#34;:&#34;`+token+`&#34;}"`) {
		t.Error("the page does not give htmx the session's token")
	}
	site, _ := url.Parse(c.web.url)
	var session *http.Cookie
	for _, ck := range browser.Jar.Cookies(site) {
		if ck.Name == "boxoffice_session" {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie after opening a page")
	}
	_, otherPage := c.formSession(show.ID)
	before := topicEndOffset(t, c.kc, event.TopicBookingMovie)
	form := func(csrf string) url.Values {
		return url.Values{"show_id": {show.ID}, "seats": {"G7"}, "name": {"Grace Hopper"}, "phone": {"07700 900456"},
			"card_number": {cardApproves}, "idempotency_key": {"csrf-test-" + csrf}, "csrf_token": {csrf}}
	}
	for what, csrf := range map[string]string{"no token": "", "another session's token": csrfOf(t, otherPage)} {
		resp, err := browser.PostForm(c.web.url+"/bookings", form(csrf))
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Reload the page") {
			t.Errorf("booking form with %s: %d, want 403 saying to reload", what, resp.StatusCode)
		}
	}
	if after := topicEndOffset(t, c.kc, event.TopicBookingMovie); after != before {
		t.Errorf("refused forms reached booking-movie: %d → %d", before, after)
	}
	summary := func(header string) int {
		req, _ := http.NewRequest(http.MethodPost, c.web.url+"/shows/"+show.ID+"/summary", strings.NewReader("seats=G7"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("HX-Request", "true")
		if header != "" {
			req.Header.Set("X-CSRF-Token", header)
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(resp)
		return resp.StatusCode
	}
	if got := summary(token); got != http.StatusOK {
		t.Errorf("htmx summary with the header: %d, want 200", got)
	}
	if got := summary(""); got != http.StatusForbidden {
		t.Errorf("htmx summary without a token: %d, want 403", got)
	}
	resp, err := browser.PostForm(c.web.url+"/bookings", form(token))
	if err != nil {
		t.Fatal(err)
	}
	readBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("booking form with its session's token: %d, want 303", resp.StatusCode)
	}
}
