package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/web"
)

// doorAnswer is what /api/tickets/verify and /api/tickets/admit answer.
type doorAnswer struct {
	Valid       bool       `json:"valid"`
	Error       string     `json:"error"`
	Message     string     `json:"message"`
	TicketID    string     `json:"ticket_id"`
	Code        string     `json:"code"`
	ShowID      string     `json:"show_id"`
	Seats       []string   `json:"seats"`
	Admitted    bool       `json:"admitted"`
	AdmittedAt  *time.Time `json:"admitted_at"`
	AdmittedNow bool       `json:"admitted_now"`
	ForToday    bool       `json:"for_today"`
}

// doorKey is the key door staff sign in with, as the web made it for this cluster's database.
func (c *cluster) doorKey() string {
	c.t.Helper()
	key, _, err := web.DoorKey(context.Background(), c.db(), "")
	if err != nil {
		c.t.Fatal(err)
	}
	return key
}

var london, _ = time.LoadLocation("Europe/London")

func (c *cluster) door(method, path string, body any, headers ...string) (int, doorAnswer, string) {
	c.t.Helper()
	var reader *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		reader = bytes.NewReader(b)
	} else {
		reader = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, c.web.url+path, reader)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	raw := readAll(c.t.(*testing.T), resp)
	var out doorAnswer
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		c.t.Fatalf("%s %s answered %d, not JSON: %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out, raw
}

// TestTicketDoorVerifiesAndAdmitsOnce: a ticket's signed code (what its QR code encodes) checks
// out at the door with its show and seats and no personal data; the first admission is
// recorded, a second is told when the first was; a made-up or damaged code is refused.
func TestTicketDoorVerifiesAndAdmitsOnce(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	st := c.waitFinal(c.mustBook(show.ID, []string{"H7", "H8"}, cardApproves).BookingID)
	if st.Status != "ticketed" || !strings.HasPrefix(st.TicketCode, "BX1.") {
		t.Fatalf("booking %q with ticket code %q, want ticketed with a signed code", st.Status, st.TicketCode)
	}
	code := st.TicketCode
	if strings.Contains(code, customerName) || strings.Contains(code, "H7") {
		t.Fatalf("the ticket code %q carries personal or seat data", code)
	}

	status, check, raw := c.door(http.MethodGet, "/api/tickets/verify?code="+url.QueryEscape(code), nil)
	if status != http.StatusOK || !check.Valid || check.TicketID != st.Ticket.TicketID || check.ShowID != show.ID ||
		strings.Join(check.Seats, ",") != "H7,H8" || check.Admitted || check.Code != st.Ticket.Code {
		t.Fatalf("verify a fresh ticket: %d %s", status, raw)
	}
	if wantToday := show.StartsAt.In(london).Format("2006-01-02") == time.Now().In(london).Format("2006-01-02"); check.ForToday != wantToday {
		t.Errorf("show at %s: for_today %v, want %v", show.StartsAt, check.ForToday, wantToday)
	}
	if strings.Contains(raw, customerName) || strings.Contains(raw, "7700") {
		t.Errorf("the door's answer shows personal data: %s", raw)
	}

	// Only door staff admit: someone with a photo of the ticket cannot use it up from home.
	for _, auth := range []string{"", "Bearer " + code, "Bearer wrong-door-key"} {
		status, answer, raw := c.door(http.MethodPost, "/api/tickets/admit", map[string]string{"code": code}, "Authorization", auth)
		if status != http.StatusUnauthorized || answer.Error != "door_staff_only" || answer.AdmittedNow {
			t.Errorf("admit with Authorization %q: %d %s, want 401 door_staff_only", auth, status, raw)
		}
	}
	if _, check, raw := c.door(http.MethodGet, "/api/tickets/verify?code="+url.QueryEscape(code), nil); check.Admitted {
		t.Fatalf("a refused admission admitted the ticket: %s", raw)
	}
	staff := []string{"Authorization", "Bearer " + c.doorKey()}
	status, first, raw := c.door(http.MethodPost, "/api/tickets/admit", map[string]string{"code": code}, staff...)
	if status != http.StatusOK || !first.AdmittedNow || first.AdmittedAt == nil {
		t.Fatalf("first admission: %d %s, want admitted now", status, raw)
	}
	status, again, raw := c.door(http.MethodPost, "/api/tickets/admit", map[string]string{"code": code}, staff...)
	if status != http.StatusOK || again.AdmittedNow || !again.Admitted || again.AdmittedAt == nil || !again.AdmittedAt.Equal(*first.AdmittedAt) {
		t.Fatalf("second admission: %d %s, want already admitted at the first one's time %v", status, raw, first.AdmittedAt)
	}

	forged := code[:len(code)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(code, "AA")]
	for _, bad := range []string{forged, "BX1." + st.Ticket.TicketID + "." + c.token(st.BookingID), st.Ticket.Code, "hello"} {
		status, answer, raw := c.door(http.MethodGet, "/api/tickets/verify?code="+url.QueryEscape(bad), nil)
		if status != http.StatusNotFound || answer.Valid || answer.Error != "invalid_ticket" || !strings.Contains(answer.Message, "not a valid") {
			t.Errorf("verify %q: %d %s, want 404 invalid_ticket with the reason", bad, status, raw)
		}
	}
	// Genuinely signed, but a ticket this web has not read yet (a replica catching up): try again,
	// never "made up".
	key, err := web.CapabilityKey(context.Background(), c.db())
	if err != nil {
		t.Fatal(err)
	}
	unknown := web.SignedTicketCode(key, "00000000-0000-4000-8000-000000000000")
	if status, answer, raw := c.door(http.MethodGet, "/api/tickets/verify?code="+url.QueryEscape(unknown), nil); status != http.StatusServiceUnavailable || answer.Error != "try_again" {
		t.Errorf("verify a signed code of a ticket not known yet: %d %s, want 503 try_again", status, raw)
	}
	if status, _, raw := c.door(http.MethodGet, "/api/tickets/verify", nil); status != http.StatusBadRequest {
		t.Errorf("verify without a code: %d %s, want 400", status, raw)
	}
	if status, _, raw := c.door(http.MethodPost, "/api/tickets/admit", "{", staff...); status != http.StatusBadRequest {
		t.Errorf("admit with a broken body: %d %s, want 400", status, raw)
	}

	// The door's page: the admitted ticket says so; another ticket is admitted with its button.
	if status, page := c.getPage("/tickets/verify?code=" + url.QueryEscape(code)); status != http.StatusOK ||
		!strings.Contains(page, `data-verdict="already-admitted"`) || strings.Contains(page, customerName) {
		t.Errorf("door page for an admitted ticket: %d, want it to say already admitted (and no name)", status)
	}
	if status, page := c.getPage("/tickets/verify?code=" + url.QueryEscape(forged)); status != http.StatusNotFound || !strings.Contains(page, "Do not admit") {
		t.Errorf("door page for a forged code: %d, want 404 saying do not admit", status)
	}
	other := c.waitFinal(c.mustBook(show.ID, []string{"H9"}, cardApproves).BookingID)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(c.web.url + "/tickets/verify?code=" + url.QueryEscape(other.TicketCode))
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, resp)
	if !strings.Contains(page, `data-verdict="valid"`) || strings.Contains(page, ">Admit</button>") || !strings.Contains(page, `href="/tickets/door"`) {
		t.Fatalf("door page for a fresh ticket, not signed in: %d, want it valid, with a sign-in link and no Admit button", resp.StatusCode)
	}
	resp, err = browser.Get(c.web.url + "/tickets/door")
	if err != nil {
		t.Fatal(err)
	}
	signIn := readAll(t, resp)
	resp, err = browser.PostForm(c.web.url+"/tickets/verify", url.Values{"csrf_token": {csrfOf(t, signIn)}, "code": {other.TicketCode}})
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "Only door staff can admit tickets") {
		t.Errorf("Admit posted without signing in: %d, want 403 saying only door staff may", resp.StatusCode)
	}
	// Door staff sign in on the device: a wrong key is refused; the right one lets them admit.
	resp, err = browser.PostForm(c.web.url+"/tickets/door", url.Values{"csrf_token": {csrfOf(t, signIn)}, "door_key": {"not-the-door-key"}})
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "not the door key") || len(resp.Cookies()) != 0 {
		t.Errorf("signing in with a wrong key: %d, cookies %v; want 403 saying so, and no cookie", resp.StatusCode, resp.Cookies())
	}
	// Neither a made-up door cookie nor the door key sent as a bearer token to a page makes a
	// device door staff: only signing in does.
	for _, what := range []string{"a forged cookie", "a bearer token"} {
		req, _ := http.NewRequest(http.MethodGet, c.web.url+"/tickets/verify?code="+url.QueryEscape(other.TicketCode), nil)
		if what == "a forged cookie" {
			req.AddCookie(&http.Cookie{Name: "boxoffice_door", Value: fmt.Sprintf("%d.%s", time.Now().Unix(), strings.Repeat("A", 43))})
		} else {
			req.Header.Set("Authorization", "Bearer "+c.doorKey())
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if page := readAll(t, resp); strings.Contains(page, ">Admit</button>") {
			t.Errorf("the door page with %s offers to admit", what)
		}
	}
	resp, err = browser.PostForm(c.web.url+"/tickets/door", url.Values{"csrf_token": {csrfOf(t, signIn)}, "door_key": {c.doorKey()}})
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	resp, err = browser.Get(c.web.url + "/tickets/verify?code=" + url.QueryEscape(other.TicketCode))
	if err != nil {
		t.Fatal(err)
	}
	if page = readAll(t, resp); !strings.Contains(page, ">Admit</button>") {
		t.Fatalf("door page after signing in: %d, want an Admit button", resp.StatusCode)
	}
	resp, err = browser.Get(c.web.url + "/tickets/door")
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, resp); !strings.Contains(page, "signed in as door staff") {
		t.Error("after signing in, the door page does not say so")
	}
	resp, err = browser.PostForm(c.web.url+"/tickets/verify", url.Values{"csrf_token": {csrfOf(t, page)}, "code": {other.TicketCode}})
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(page, `data-verdict="admitted"`) {
		t.Errorf("pressing Admit: %d, want the ticket admitted", resp.StatusCode)
	}
	if _, answer, raw := c.door(http.MethodGet, "/api/tickets/verify?code="+url.QueryEscape(other.TicketCode), nil); !answer.Admitted {
		t.Errorf("after Admit on the page the API says %s, want admitted", raw)
	}

	// Signing out ends the device's door session.
	resp, err = browser.Get(c.web.url + "/tickets/door")
	if err != nil {
		t.Fatal(err)
	}
	resp, err = browser.PostForm(c.web.url+"/tickets/door/sign-out", url.Values{"csrf_token": {csrfOf(t, readAll(t, resp))}})
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	resp, err = browser.Get(c.web.url + "/tickets/door")
	if err != nil {
		t.Fatal(err)
	}
	if page := readAll(t, resp); strings.Contains(page, "signed in as door staff") {
		t.Error("after signing out the device is still signed in as door staff")
	}

	// `boxoffice door-key` shows the key the web made.
	var out strings.Builder
	if err := runDoorKey(context.Background(), Config{DatabaseURL: c.dbURL}, &out); err != nil || strings.TrimSpace(out.String()) != c.doorKey() {
		t.Errorf("boxoffice door-key printed %q (%v), want the web's door key", out.String(), err)
	}

	// Guessing the key: a few wrong keys a minute from one address, then 429 with Retry-After.
	var last int
	var retryAfter string
	for range 8 {
		req, _ := http.NewRequest(http.MethodPost, c.web.url+"/api/tickets/admit", strings.NewReader(`{"code":"x"}`))
		req.Header.Set("Authorization", "Bearer guess-"+time.Now().String())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		last, retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if last != http.StatusTooManyRequests || retryAfter == "" {
		t.Errorf("eight wrong door keys in a row: the last answered %d (Retry-After %q), want 429", last, retryAfter)
	}
}
