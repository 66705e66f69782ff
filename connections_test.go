package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
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

// TestEventStreamsAreCappedPerAddressAndInTotal: one address may hold STREAMS_PER_ADDRESS event
// streams (seat maps and bookings together), and the next is refused with 429, Retry-After and
// a reason naming streams; closing one frees its place; beyond STREAMS_MAX everyone is refused
// with 503 and Retry-After.
func TestEventStreamsAreCappedPerAddressAndInTotal(t *testing.T) {
	c := newCluster(t)
	// Behind a trusted proxy (this test), each X-Forwarded-For address is a client of its own.
	c.startWith(TargetWeb, map[string]string{"STREAMS_PER_ADDRESS": "3", "STREAMS_MAX": "4", "TRUSTED_PROXIES": "127.0.0.1"})
	show := c.futureShow()
	seats := "/shows/" + show.ID + "/seats/events"
	type stream struct {
		status           int
		retryAfter, body string
		close            func()
	}
	open := func(from, path string) stream {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.web.url+path, nil)
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		s := stream{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), close: cancel}
		if resp.StatusCode != http.StatusOK {
			s.body = readBody(resp)
			cancel()
		}
		return s
	}
	const a, b, third = "198.51.100.1", "198.51.100.2", "198.51.100.3"
	var held []stream
	for i := range 3 {
		if s := open(a, seats); s.status != http.StatusOK {
			t.Fatalf("seat map stream %d of 3 from one address: %d %s", i+1, s.status, s.body)
		} else {
			held = append(held, s)
		}
	}
	if s := open(a, seats); s.status != http.StatusTooManyRequests || s.retryAfter == "" || !strings.Contains(s.body, "streams are open from your address") {
		t.Errorf("a fourth seat map stream from one address: %d, Retry-After %q, %q; want 429 with Retry-After, naming streams", s.status, s.retryAfter, s.body)
	}
	// The cap counts every kind: a booking's stream is refused before the booking is even looked up.
	if s := open(a, "/api/bookings/00000000-0000-0000-0000-000000000001/events"); s.status != http.StatusTooManyRequests || s.retryAfter == "" || !strings.Contains(s.body, `"too_many_streams"`) {
		t.Errorf("a booking stream from an address at its cap: %d, Retry-After %q, %s; want 429 too_many_streams", s.status, s.retryAfter, s.body)
	}
	if s := open(b, seats); s.status != http.StatusOK {
		t.Fatalf("another address's seat map stream, the fourth in all: %d %s", s.status, s.body)
	}
	if s := open(third, seats); s.status != http.StatusServiceUnavailable || s.retryAfter == "" {
		t.Errorf("a fifth stream in all, from a third address: %d, Retry-After %q, %q; want 503 with Retry-After", s.status, s.retryAfter, s.body)
	}
	// Closing a stream gives its place back, once the server has seen it go.
	held[0].close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := open(a, seats)
		if s.status == http.StatusOK {
			break
		}
		if s.status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after closing one of its streams, the address opens another: %d %s, want 200", s.status, s.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := open(third, seats); s.status != http.StatusServiceUnavailable {
		t.Errorf("with four streams open again, a third address: %d, want 503", s.status)
	}
}

// TestAStreamAskedForWithABodyHoldsNoPlace: a stream asked for with a body, which the client then
// leaves without sending, or by HEAD, whose answer net/http throws away, would hold its place for
// good (the server notices a client leave only once a body is read, and a HEAD's writes never
// fail): both are refused with 400 before they take a place.
func TestAStreamAskedForWithABodyHoldsNoPlace(t *testing.T) {
	c := newCluster(t)
	c.startWith(TargetWeb, map[string]string{"STREAMS_PER_ADDRESS": "2"})
	show := c.futureShow()
	path := "/shows/" + show.ID + "/seats/events"
	addr := strings.TrimPrefix(c.web.url, "http://")
	for _, request := range []string{
		"GET " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n",
		"GET " + path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HEAD " + path + " HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		for range 3 { // past the address's cap of 2, were they counted
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write([]byte(request)); err != nil {
				t.Fatal(err)
			}
			status, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if !strings.Contains(status, " 400 ") {
				t.Fatalf("%q: %q, want 400", strings.SplitN(request, "\r\n", 2)[0]+" "+strings.SplitN(request, "\r\n", 4)[2], status)
			}
		}
	}
	// The address's places are all free: two streams open.
	for i := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.web.url+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("stream %d after the refused ones: %d, want 200", i+1, resp.StatusCode)
		}
		defer cancel()
	}
}
