package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// TestABodyThatNeverComesIsCutOff: a POST whose headers arrive but whose body never does is
// answered 408 once REQUEST_BODY_TIMEOUT has passed, and its connection closed, instead of
// holding a connection and a handler for as long as the client likes; a form post that brought
// no session is refused with 403 at once, without waiting for its body.
func TestABodyThatNeverComesIsCutOff(t *testing.T) {
	const timeout = 5 * time.Second
	c := newCluster(t)
	c.startWith(TargetWeb, map[string]string{"REQUEST_BODY_TIMEOUT": timeout.String()})
	show := c.futureShow()
	browser, _ := c.formSession(show.ID)
	site, _ := url.Parse(c.web.url)
	session := ""
	for _, ck := range browser.Jar.Cookies(site) {
		if ck.Name == "boxoffice_session" {
			session = ck.Value
		}
	}
	if session == "" {
		t.Fatal("no session cookie after opening a page")
	}
	form := "Content-Type: application/x-www-form-urlencoded\r\n"
	cases := []struct {
		name, path, headers string
		status              int
		atOnce              bool
	}{
		{"an API booking", "/api/bookings", "Content-Type: application/json\r\n", http.StatusRequestTimeout, false},
		{"a form booking with its session", "/bookings", form + "Cookie: boxoffice_session=" + session + "\r\n", http.StatusRequestTimeout, false},
		{"a form booking without a session", "/bookings", form, http.StatusForbidden, true},
		{"a seat map's htmx post with a wrong token", "/shows/" + show.ID + "/summary",
			form + "Cookie: boxoffice_session=" + session + "\r\nX-CSRF-Token: not-the-token\r\n", http.StatusForbidden, true},
	}
	// Side by side: each case waits for the timeout at most once.
	type result struct {
		status  int
		after   time.Duration
		closed  bool
		problem error
	}
	results := make([]chan result, len(cases))
	for i, tc := range cases {
		results[i] = make(chan result, 1)
		go func() {
			conn, err := net.Dial("tcp", site.Host)
			if err != nil {
				results[i] <- result{problem: err}
				return
			}
			defer conn.Close()
			start := time.Now()
			// Far longer than the timeout: today the server waits for the body for ever.
			_ = conn.SetDeadline(start.Add(timeout + 30*time.Second))
			head := "POST " + tc.path + " HTTP/1.1\r\nHost: " + site.Host + "\r\n" + tc.headers + "Content-Length: 100\r\n\r\n"
			if _, err := conn.Write([]byte(head)); err != nil {
				results[i] <- result{problem: err}
				return
			}
			r := bufio.NewReader(conn)
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				results[i] <- result{problem: err, after: time.Since(start)}
				return
			}
			after := time.Since(start)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			_, err = r.ReadByte() // the connection is closed after the answer
			results[i] <- result{status: resp.StatusCode, after: after, closed: err == io.EOF}
		}()
	}
	for i, tc := range cases {
		got := <-results[i]
		switch {
		case got.problem != nil:
			t.Errorf("%s, no body sent: no answer after %v (%v), want %d", tc.name, got.after.Round(time.Millisecond), got.problem, tc.status)
		case got.status != tc.status || !got.closed:
			t.Errorf("%s, no body sent: %d after %v, connection closed %v; want %d and the connection closed", tc.name, got.status, got.after.Round(time.Millisecond), got.closed, tc.status)
		case tc.atOnce && got.after > timeout*3/4:
			t.Errorf("%s: refused after %v, want at once, without waiting for the body", tc.name, got.after.Round(time.Millisecond))
		case !tc.atOnce && got.after < timeout*3/4:
			t.Errorf("%s: answered %d after %v, before the body was due", tc.name, got.status, got.after.Round(time.Millisecond))
		}
	}
}
