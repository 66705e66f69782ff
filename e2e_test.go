package main

// End-to-end tests: the whole system — web, four services, real PostgreSQL, a real
// Kafka-protocol broker — driven over HTTP the way a person's browser or a script would.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/boxoffice/boxoffice/db"
	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/web"
)

const (
	cardApproves    = "4242 4242 4242 4242"
	cardDeclined    = "4000 0000 0000 0002"
	cardNoFunds     = "4000 0000 0000 9995"
	waitForOutcome  = 30 * time.Second // generous: CI machines are busy; speed is measured elsewhere
	testPartitions  = 3
	customerName    = "Ada Lovelace"
	customerPhone   = "+44 7700 900123"
	normalizedPhone = "+447700900123"
)

// process is one running boxoffice process (one -target), started in-process.
type process struct {
	target string
	url    string
	cancel context.CancelFunc
	exited chan struct{} // closed when run returns; err is set before
	err    error
	logs   *syncBuffer
}

// stop sends the equivalent of SIGTERM and waits for a clean drain.
func (p *process) stop(t testing.TB) {
	t.Helper()
	p.cancel()
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s stopped with error: %v", p.target, p.err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s", p.target)
	}
}

// cluster is a broker, a database and the processes sharing them.
type cluster struct {
	t     testing.TB
	dbURL string
	kc    kafka.Cluster
	web   *process
	conn  *sqlx.DB
}

// db is a connection to the cluster's database, for checks a user cannot make over HTTP.
func (c *cluster) db() *sqlx.DB {
	if c.conn == nil {
		c.conn = openDB(c.t, c.dbURL)
	}
	return c.conn
}

// realKafkaEnv names the Apache Kafka brokers to run the end-to-end tests against instead of the
// embedded broker (CI runs the suite both ways); realKafkaReplicasEnv their replication factor.
const (
	realKafkaEnv         = "BOXOFFICE_TEST_KAFKA_BROKERS"
	realKafkaReplicasEnv = "BOXOFFICE_TEST_KAFKA_REPLICATION_FACTOR"
)

// newCluster starts an in-memory embedded broker and an empty database for one test. With
// BOXOFFICE_TEST_KAFKA_BROKERS set it uses that Kafka cluster instead, in a namespace of the
// test's own, so tests sharing the cluster never read each other's events.
func newCluster(t testing.TB) *cluster {
	t.Helper()
	if brokers := os.Getenv(realKafkaEnv); brokers != "" {
		return &cluster{t: t, dbURL: dbtest.NewURL(t),
			kc: kafka.Cluster{Brokers: strings.Split(brokers, ","), Namespace: "test-" + uuid.NewString()[:13]}}
	}
	broker, err := kafka.StartEmbedded(0, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	return &cluster{t: t, dbURL: dbtest.NewURL(t), kc: kafka.Cluster{Brokers: broker.Addrs()}}
}

// kafkaEnv is the environment that points a process at the cluster's Kafka.
func (c *cluster) kafkaEnv() map[string]string {
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(c.kc.Brokers, ","), "KAFKA_NAMESPACE": c.kc.Namespace,
		"KAFKA_PARTITIONS": fmt.Sprint(testPartitions),
	}
	if r := os.Getenv(realKafkaReplicasEnv); r != "" {
		env["KAFKA_REPLICATION_FACTOR"] = r
	}
	return env
}

// start runs one target against the cluster's broker and database.
func (c *cluster) start(target string) *process {
	c.t.Helper()
	return c.startWith(target, nil)
}

// startWith runs one target with extra environment, such as another WEB_INSTANCE.
func (c *cluster) startWith(target string, extra map[string]string) *process {
	c.t.Helper()
	// Tests book far faster and far more than a person, as one buyer from one address, and follow
	// more bookings at once: the rate limit, the seat caps and the cap on streams have tests of
	// their own.
	env := map[string]string{"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": c.dbURL, "LOG_LEVEL": "debug", "BOOKING_RATE_LIMIT": "0",
		"SEATS_PER_BUYER": "0", "SEATS_PER_ADDRESS": "0", "STREAMS_PER_ADDRESS": "0"}
	for k, v := range c.kafkaEnv() {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := LoadConfig(func(key string) string { return env[key] })
	if err != nil {
		c.t.Fatal(err)
	}
	// HTTP_ADDR in extra restarts a web where browsers already point; otherwise any free port.
	addr := "127.0.0.1:0"
	if a := extra["HTTP_ADDR"]; a != "" {
		addr = a
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{target: target, cancel: cancel, exited: make(chan struct{}), logs: &syncBuffer{}}
	started := make(chan string, 1)
	go func() {
		defer close(p.exited)
		p.err = runWith(ctx, target, cfg, io.Discard, runOptions{
			listener: ln, logOut: p.logs,
			started: func(url string, _ []string) { started <- url },
		})
	}()
	select {
	case p.url = <-started:
	case <-p.exited:
		c.t.Fatalf("%s did not start: %v\n%s", target, p.err, p.logs)
	case <-time.After(60 * time.Second):
		c.t.Fatalf("%s did not start within 60s\n%s", target, p.logs)
	}
	c.t.Cleanup(func() {
		cancel()
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			c.t.Errorf("%s did not stop within 30s of its context ending", target)
		}
		if c.t.Failed() {
			c.t.Logf("logs of %s:\n%s", target, p.logs)
		}
	})
	if (target == TargetAll || target == TargetWeb) && c.web == nil {
		c.web = p
	}
	return p
}

// startAll runs every part in one process, as `make run` does.
func startAll(t testing.TB) *cluster {
	c := newCluster(t)
	c.start(TargetAll)
	return c
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// --- the JSON API, as a script uses it ---------------------------------------------------

type apiShow struct {
	ID              string    `json:"id"`
	MovieID         string    `json:"movie_id"`
	MovieTitle      string    `json:"movie_title"`
	TheatreName     string    `json:"theatre_name"`
	TheatreLocation string    `json:"theatre_location"`
	ScreenNumber    int       `json:"screen_number"`
	StartsAt        time.Time `json:"starts_at"`
	PriceCents      int64     `json:"price_cents"`
	SeatsLeft       int       `json:"seats_left"`
}

type apiStatus struct {
	BookingID string `json:"booking_id"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
	Stages    []struct {
		Name   string    `json:"name"`
		At     time.Time `json:"at"`
		Detail string    `json:"detail"`
	} `json:"stages"`
	Ticket     *event.TicketIssued `json:"ticket"`
	TicketCode string              `json:"ticket_code"`
}

func (c *cluster) getJSON(path string, out any) int {
	c.t.Helper()
	resp, err := http.Get(c.web.url + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			c.t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

// staffJSON is getJSON as staff: the door key as a bearer token, as an operator's script sends it.
func (c *cluster) staffJSON(path string, out any) int {
	c.t.Helper()
	status, body := c.staffPage(path)
	if out != nil && status < 300 {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			c.t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return status
}

// staffPage is getPage as staff.
func (c *cluster) staffPage(path string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.web.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.doorKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (c *cluster) getPage(path string) (int, string) {
	c.t.Helper()
	resp, err := http.Get(c.web.url + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// futureShow finds a show in London's Screen 1 (12 rows of 16: every seat the tests use
// exists there) that starts at least an hour from now.
func (c *cluster) futureShow() apiShow {
	c.t.Helper()
	var movies struct {
		Movies []struct{ ID string } `json:"movies"`
	}
	c.getJSON("/api/movies", &movies)
	for _, m := range movies.Movies {
		var shows struct{ Shows []apiShow }
		c.getJSON("/api/shows?movie_id="+url.QueryEscape(m.ID), &shows)
		for _, s := range shows.Shows {
			if time.Until(s.StartsAt) > time.Hour && s.TheatreName == "Boxoffice Bankside" && s.ScreenNumber == 1 {
				return s
			}
		}
	}
	c.t.Fatal("no show in Bankside Screen 1 starts in more than an hour")
	return apiShow{}
}

// futureShows finds n shows, of any film and screen, that start at least an hour from now. Rows
// A to F with seats 1 to 10 exist in every screen.
func (c *cluster) futureShows(n int) []apiShow {
	c.t.Helper()
	var movies struct {
		Movies []struct{ ID string } `json:"movies"`
	}
	c.getJSON("/api/movies", &movies)
	var out []apiShow
	for _, m := range movies.Movies {
		var shows struct{ Shows []apiShow }
		c.getJSON("/api/shows?movie_id="+url.QueryEscape(m.ID), &shows)
		for _, s := range shows.Shows {
			if time.Until(s.StartsAt) > time.Hour && len(out) < n {
				out = append(out, s)
			}
		}
	}
	if len(out) < n {
		c.t.Fatalf("%d shows start in more than an hour, want %d", len(out), n)
	}
	return out
}

func (c *cluster) seatStates(showID string) map[string]string {
	c.t.Helper()
	var seats struct {
		Seats []struct{ Label, State string } `json:"seats"`
	}
	if status := c.getJSON("/api/shows/"+showID+"/seats", &seats); status != http.StatusOK {
		c.t.Fatalf("GET seats of %s: %d", showID, status)
	}
	states := map[string]string{}
	for _, s := range seats.Seats {
		states[s.Label] = s.State
	}
	return states
}

type bookingResponse struct {
	BookingID string `json:"booking_id"`
	StatusURL string `json:"status_url"`
	EventsURL string `json:"events_url"`
	Error     string `json:"error"`
	Field     string `json:"field"`
	Message   string `json:"message"`
}

func (c *cluster) book(body any) (int, bookingResponse) {
	c.t.Helper()
	raw, ok := body.(string)
	if !ok {
		b, _ := json.Marshal(body)
		raw = string(b)
	}
	resp, err := http.Post(c.web.url+"/api/bookings", "application/json", strings.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bookingResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		c.t.Fatalf("POST /api/bookings answered %d with a body that is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

func request(showID string, seats []string, card string) map[string]any {
	return map[string]any{"show_id": showID, "seats": seats, "name": customerName, "phone": customerPhone, "card_number": card}
}

// mustBook submits a request that must be accepted.
func (c *cluster) mustBook(showID string, seats []string, card string) bookingResponse {
	c.t.Helper()
	status, resp := c.book(request(showID, seats, card))
	if status != http.StatusAccepted {
		c.t.Fatalf("POST /api/bookings: %d %+v", status, resp)
	}
	return resp
}

// token is a booking's capability token, as the web signs it with the key the replicas share:
// what a test needs to follow a booking it did not create through book (the API's URLs carry it).
func (c *cluster) token(bookingID string) string {
	c.t.Helper()
	key, err := web.CapabilityKey(context.Background(), c.db())
	if err != nil {
		c.t.Fatal(err)
	}
	return web.BookingToken(key, bookingID)
}

// statusPath is a booking's status URL, with its token.
func (c *cluster) statusPath(bookingID string) string {
	return "/api/bookings/" + bookingID + "?token=" + c.token(bookingID)
}

// waitFinal polls the status URL until the booking ends.
func (c *cluster) waitFinal(bookingID string) apiStatus {
	c.t.Helper()
	return c.waitFinalWithin(bookingID, waitForOutcome)
}

// waitFinalWithin is waitFinal with a bound of its own.
func (c *cluster) waitFinalWithin(bookingID string, waitForOutcome time.Duration) apiStatus {
	c.t.Helper()
	deadline := time.Now().Add(waitForOutcome)
	var st apiStatus
	for time.Now().Before(deadline) {
		c.getJSON(c.statusPath(bookingID), &st)
		// Final, and shown up to its final stage: each topic is read on its own, so the status
		// can be final while an earlier stage is still on its way (the status page then shows
		// the stages up to the gap).
		final := st.Status == "ticketed" || st.Status == "rejected" || st.Status == "failed"
		if final && slices.Contains(stageNames(st), st.Status) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("booking %s still %q after %s", bookingID, st.Status, waitForOutcome)
	return st
}

// readSSE follows an SSE stream until the server ends it, returning every event.
func readSSE(t testing.TB, streamURL string, lastEventID string) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitForOutcome)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, streamURL, nil)
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET %s: %d %s", streamURL, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var events []sseEvent
	err = readEvents(resp.Body, func(ev sseEvent) bool {
		events = append(events, ev)
		return true
	})
	if err != nil {
		t.Fatalf("SSE stream %s broke off after %d events (the server should close it after \"close\"): %v", streamURL, len(events), err)
	}
	return events
}

func eventNames(events []sseEvent) []string {
	names := make([]string, len(events))
	for i, e := range events {
		names[i] = e.Name
	}
	return names
}

// --- the tests --------------------------------------------------------------------------

// TestBookingFromRequestToTicket follows one booking through all five topics: every stage
// arrives on the SSE stream once and in order, and every ticket field is right.
func TestBookingFromRequestToTicket(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	seats := []string{"C5", "C6"}

	start := time.Now()
	resp := c.mustBook(show.ID, seats, cardApproves)
	token := "?token=" + c.token(resp.BookingID)
	if resp.StatusURL != "/api/bookings/"+resp.BookingID+token || resp.EventsURL != "/api/bookings/"+resp.BookingID+"/events"+token {
		t.Errorf("URLs in the 202: %+v", resp)
	}
	events := readSSE(t, c.web.url+resp.EventsURL, "")
	elapsed := time.Since(start)

	want := []string{"requested", "confirmed", "paid", "notified", "ticketed", "outcome", "close"}
	if got := eventNames(events); !slices.Equal(got, want) {
		t.Fatalf("SSE events %v, want %v", got, want)
	}
	for i, e := range events[:5] {
		if e.ID != fmt.Sprint(i+1) {
			t.Errorf("event %s has id %q, want %d (clients resume with Last-Event-ID)", e.Name, e.ID, i+1)
		}
		var stage struct{ Name, Detail string }
		if err := json.Unmarshal([]byte(e.Data), &stage); err != nil || stage.Name != e.Name || stage.Detail == "" {
			t.Errorf("event %s data %q: want a JSON stage with its name and a detail (%v)", e.Name, e.Data, err)
		}
	}
	t.Logf("request to ticket event on the stream: %s", elapsed)

	var st apiStatus
	c.getJSON(resp.StatusURL, &st)
	if st.Status != "ticketed" || len(st.Stages) != 5 {
		t.Fatalf("status %q with %d stages, want ticketed with 5", st.Status, len(st.Stages))
	}
	for i := 1; i < len(st.Stages); i++ {
		if st.Stages[i].At.Before(st.Stages[i-1].At) {
			t.Errorf("stage %s at %s is before %s at %s", st.Stages[i].Name, st.Stages[i].At, st.Stages[i-1].Name, st.Stages[i-1].At)
		}
	}
	tk := st.Ticket
	if tk == nil {
		t.Fatal("ticketed booking without a ticket")
	}
	checks := []struct{ field, got, want string }{
		{"movie", tk.MovieTitle, show.MovieTitle},
		{"theatre name", tk.TheatreName, show.TheatreName},
		{"theatre location", tk.TheatreLocation, show.TheatreLocation},
		{"show time", tk.StartsAt.UTC().Format(time.RFC3339), show.StartsAt.UTC().Format(time.RFC3339)},
		{"screen", fmt.Sprint(tk.ScreenNumber), fmt.Sprint(show.ScreenNumber)},
		{"seats", strings.Join(tk.Seats, ","), "C5,C6"},
		{"booked under", tk.BookedUnder, customerName},
		{"price", fmt.Sprint(tk.AmountCents), fmt.Sprint(2 * show.PriceCents)},
	}
	for _, ch := range checks {
		if ch.got != ch.want || ch.got == "" {
			t.Errorf("ticket %s = %q, want %q", ch.field, ch.got, ch.want)
		}
	}
	if tk.TicketID == "" || len(tk.Code) != 8 {
		t.Errorf("ticket id %q, code %q: want an id and a code like K7Q-M4XP", tk.TicketID, tk.Code)
	}

	// The ticket is also at /api/tickets/{id}, on the status page and on the printable page.
	var byID struct {
		BookingID string             `json:"booking_id"`
		Ticket    event.TicketIssued `json:"ticket"`
	}
	if status := c.getJSON("/api/tickets/"+tk.TicketID+token, &byID); status != http.StatusOK || byID.BookingID != resp.BookingID || byID.Ticket.Code != tk.Code {
		t.Errorf("GET /api/tickets/%s: %d %+v", tk.TicketID, status, byID)
	}
	for _, page := range []string{"/bookings/" + resp.BookingID + token, "/bookings/" + resp.BookingID + "/ticket" + token} {
		status, body := c.getPage(page)
		if status != http.StatusOK {
			t.Errorf("GET %s: %d", page, status)
		}
		for _, want := range []string{tk.Code, tk.MovieTitle, tk.TheatreName, customerName, "C5, C6", fmt.Sprintf("Screen %d", show.ScreenNumber)} {
			if !strings.Contains(body, htmlEscape(want)) {
				t.Errorf("%s does not show %q", page, want)
			}
		}
	}

	// The seats are sold, and the customer got the confirmation text.
	if states := c.seatStates(show.ID); states["C5"] != "taken" || states["C6"] != "taken" || states["C7"] != "free" {
		t.Errorf("after booking C5, C6: C5=%s C6=%s C7=%s", states["C5"], states["C6"], states["C7"])
	}
	var inbox struct {
		Messages []struct{ Phone, Body string } `json:"messages"`
	}
	c.staffJSON("/api/dev/sms?phone="+url.QueryEscape(normalizedPhone), &inbox)
	if len(inbox.Messages) != 1 || !strings.Contains(inbox.Messages[0].Body, show.MovieTitle) || !strings.Contains(inbox.Messages[0].Body, "C5 C6") {
		t.Errorf("sandbox inbox for %s: %+v, want one confirmation naming the movie and seats", normalizedPhone, inbox.Messages)
	}

	// One booking is one trace: every service's log line about it carries the same trace id,
	// carried through Kafka headers and the outboxes.
	traces := map[string]bool{}
	for _, line := range strings.Split(c.web.logs.String(), "\n") {
		var entry struct {
			BookingID string `json:"booking_id"`
			TraceID   string `json:"trace_id"`
			Service   string `json:"service"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.BookingID == resp.BookingID {
			if entry.TraceID == "" {
				t.Errorf("a log line about booking %s without its trace id: %s", resp.BookingID, line)
			}
			traces[entry.TraceID] = true
		}
	}
	if len(traces) != 1 {
		t.Errorf("booking %s was logged under %d trace ids, want 1: %v", resp.BookingID, len(traces), traces)
	}

	// A browser that reconnects after the end gets the stages it missed, then the close.
	replay := readSSE(t, c.web.url+resp.EventsURL, "3")
	if got := eventNames(replay); !slices.Equal(got, []string{"notified", "ticketed", "outcome", "close"}) {
		t.Errorf("reconnect with Last-Event-ID 3: %v", got)
	}
}

// TestBrowserPagesLeadToABooking walks the pages a person clicks through: programme, movie,
// seat map, form, status page.
func TestBrowserPagesLeadToABooking(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()

	status, home := c.getPage("/")
	if status != http.StatusOK || !strings.Contains(home, htmlEscape(show.MovieTitle)) {
		t.Fatalf("home page: %d, shows %q: %v", status, show.MovieTitle, strings.Contains(home, show.MovieTitle))
	}
	status, seatMap := c.getPage("/shows/" + show.ID)
	if status != http.StatusOK {
		t.Fatalf("seat map: %d", status)
	}
	for _, want := range []string{`name="seats"`, `value="C5"`, `name="name"`, `name="phone"`, `name="card_number"`, `action="/bookings"`} {
		if !strings.Contains(seatMap, want) {
			t.Errorf("seat map page lacks %s", want)
		}
	}

	// A form with problems comes back with each one named and the choices kept.
	client, showPage := c.formSession(show.ID)
	csrf := csrfOf(t, showPage)
	form := url.Values{"show_id": {show.ID}, "seats": {"D4"}, "name": {""}, "phone": {"12"}, "card_number": {"1234"}, "csrf_token": {csrf}}
	resp, err := client.PostForm(c.web.url+"/bookings", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("bad form: %d, want 422", resp.StatusCode)
	}
	for _, want := range []string{"Enter the name to book under.", "A phone number has 7 to 15 digits.", "A card number has 12 to 19 digits."} {
		if !strings.Contains(string(body), want) {
			t.Errorf("bad form page does not say %q", want)
		}
	}
	if !regexp.MustCompile(`id="seat-D4"[^>]*checked`).Match(body) {
		t.Errorf("bad form page forgot the chosen seat D4")
	}
	if regexp.MustCompile(`id="seat-D5"[^>]*checked`).Match(body) {
		t.Errorf("bad form page checked D5, which was not chosen")
	}

	// A good form redirects to the status page, which streams progress until the ticket.
	form = url.Values{"show_id": {show.ID}, "seats": {"D4", "D5"}, "name": {"Grace Hopper"}, "phone": {"07700 900456"}, "card_number": {cardApproves}, "csrf_token": {csrf}}
	resp, err = client.PostForm(c.web.url+"/bookings", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	location := resp.Header.Get("Location")
	redirect, _ := url.Parse(location)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(location, "/bookings/") || redirect.Query().Get("token") == "" {
		t.Fatalf("good form: %d to %q, want 303 to the status page, with the booking's token", resp.StatusCode, location)
	}
	eventsURL := redirect.Path + "/events?token=" + redirect.Query().Get("token")
	// The status page shows the progress so far and follows the stream, or, if the booking was
	// already done by the time it loaded, the ticket itself.
	status, page := c.getPage(location)
	following := strings.Contains(page, `sse-connect="`+redirect.Path+`/events?after=`)
	done := strings.Contains(page, `id="ticket"`)
	if status != http.StatusOK || following == done {
		t.Fatalf("status page %s: %d, following the stream %v, showing the ticket %v: want exactly one", location, status, following, done)
	}
	events := readSSE(t, c.web.url+eventsURL, "")
	if len(events) < 2 || events[len(events)-1].Name != "close" {
		t.Fatalf("page stream ended with %v, want the close event last", eventNames(events))
	}
	outcome := events[len(events)-2]
	if outcome.Name != "outcome" || !strings.Contains(outcome.Data, "Grace Hopper") || !strings.Contains(outcome.Data, `data-field="code"`) {
		t.Errorf("page stream's outcome is not the ticket card: %q", outcome.Data)
	}
	status, printable := c.getPage(redirect.Path + "/ticket?" + redirect.RawQuery)
	if status != http.StatusOK || !strings.Contains(printable, "Grace Hopper") || strings.Contains(printable, "<nav") {
		t.Errorf("printable ticket: %d, has name %v, has navigation %v", status, strings.Contains(printable, "Grace Hopper"), strings.Contains(printable, "<nav"))
	}
	// The browser that booked finds the text in the sandbox inbox.
	resp, err = client.Get(c.web.url + "/dev/sms")
	if err != nil {
		t.Fatal(err)
	}
	inbox, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(inbox), "07700900456") || !strings.Contains(string(inbox), "booked") {
		t.Errorf("SMS inbox page: %d, lists the text to 07700900456: %v", resp.StatusCode, strings.Contains(string(inbox), "07700900456"))
	}
}

// TestDeclinedCardFailsAndFreesTheSeats: the booking ends failed with the card's reason, the
// customer is told by SMS, and the seats can be bought by the next person.
func TestDeclinedCardFailsAndFreesTheSeats(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	for _, tc := range []struct{ card, reason string }{
		{cardDeclined, "Your card was declined."},
		{cardNoFunds, "Your card has insufficient funds."},
	} {
		resp := c.mustBook(show.ID, []string{"E1", "E2"}, tc.card)
		st := c.waitFinal(resp.BookingID)
		if st.Status != "failed" || st.Reason != tc.reason {
			t.Fatalf("card %s: %q (%q), want failed (%q)", tc.card, st.Status, st.Reason, tc.reason)
		}
		if st.Ticket != nil {
			t.Errorf("a failed booking has a ticket: %+v", st.Ticket)
		}
		if states := c.seatStates(show.ID); states["E1"] != "free" || states["E2"] != "free" {
			t.Errorf("after a failed payment E1=%s E2=%s, want both free", states["E1"], states["E2"])
		}
		// The page's status and the booking service's holds follow the same payment outcome,
		// each reading it on its own: the next buyer's request is decided by the latter.
		eventually(t, "the booking service to release E1 and E2", func() bool {
			var held int
			return c.db().Get(&held, `SELECT count(*) FROM booking.held_seats WHERE show_id = $1 AND seat_label IN ('E1', 'E2')`, show.ID) == nil && held == 0
		})
	}
	eventually(t, "two 'payment failed' texts", func() bool {
		var inbox struct{ Messages []struct{ Body string } }
		c.staffJSON("/api/dev/sms?phone="+url.QueryEscape(normalizedPhone), &inbox)
		n := 0
		for _, m := range inbox.Messages {
			if strings.Contains(m.Body, "did not go through") && strings.Contains(m.Body, "seats were released") {
				n++
			}
		}
		return n == 2
	})

	// The booking service released them too: the next buyer gets them.
	st := c.waitFinal(c.mustBook(show.ID, []string{"E1", "E2"}, cardApproves).BookingID)
	if st.Status != "ticketed" {
		t.Fatalf("rebooking released seats: %q (%q), want ticketed", st.Status, st.Reason)
	}
}

// TestRejectedBookingsSayWhy: requests the booking service must refuse end "rejected" with a
// reason a person can act on, and take no seat.
func TestRejectedBookingsSayWhy(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	// A show that started an hour ago, on a screen that exists.
	pastShow := "test-past-show"
	conn := c.db()
	if _, err := conn.Exec(`INSERT INTO catalog.shows (id, movie_id, screen_id, starts_at, price_cents)
		SELECT $1, movie_id, screen_id, now() - interval '1 hour', price_cents FROM catalog.shows WHERE id = $2`, pastShow, show.ID); err != nil {
		t.Fatal(err)
	}
	first := c.waitFinal(c.mustBook(show.ID, []string{"F1"}, cardApproves).BookingID)
	if first.Status != "ticketed" {
		t.Fatalf("first booking of F1: %q", first.Status)
	}

	for _, tc := range []struct {
		name, showID string
		seats        []string
		reason       string
	}{
		{"unknown show", "no-such-show", []string{"A1"}, "This show does not exist"},
		{"show in the past", pastShow, []string{"A1"}, "can no longer be booked"},
		{"seat that does not exist", show.ID, []string{"A1", "Z42"}, "Seat Z42 does not exist in screen"},
		{"seat taken", show.ID, []string{"F1", "F2"}, "Seat F1 is already taken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := c.waitFinal(c.mustBook(tc.showID, tc.seats, cardApproves).BookingID)
			if st.Status != "rejected" || !strings.Contains(st.Reason, tc.reason) {
				t.Errorf("status %q reason %q, want rejected with %q", st.Status, st.Reason, tc.reason)
			}
			if names := stageNames(st); !slices.Equal(names, []string{"requested", "rejected"}) {
				t.Errorf("stages %v", names)
			}
		})
	}
	if states := c.seatStates(show.ID); states["A1"] != "free" || states["F2"] != "free" {
		t.Errorf("rejected bookings took seats: A1=%s F2=%s", states["A1"], states["F2"])
	}
	var payments int
	if err := conn.Get(&payments, `SELECT count(*) FROM payment.payments`); err != nil || payments != 1 {
		t.Errorf("%d payments (err %v): rejected bookings must not be charged", payments, err)
	}
}

// TestMalformedInputNeverReachesKafka: bad requests get a 4xx naming the field, and nothing is
// published.
func TestMalformedInputNeverReachesKafka(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	before := topicEndOffset(t, c.kc, event.TopicBookingMovie)

	good := func(change func(map[string]any)) map[string]any {
		r := request(show.ID, []string{"G1"}, cardApproves)
		change(r)
		return r
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"not JSON", `{"show_id":`, 400, ""},
		{"empty body", ``, 400, ""},
		{"unknown field", `{"show_id":"x","seat":["A1"]}`, 400, ""},
		{"seats not a list", good(func(r map[string]any) { r["seats"] = "G1" }), 400, ""},
		{"no show", good(func(r map[string]any) { delete(r, "show_id") }), 422, "show_id"},
		{"no seats", good(func(r map[string]any) { r["seats"] = []string{} }), 422, "seats"},
		{"bad seat label", good(func(r map[string]any) { r["seats"] = []string{"<b>"} }), 422, "seats"},
		{"same seat twice", good(func(r map[string]any) { r["seats"] = []string{"G1", "g1"} }), 422, "seats"},
		{"eleven seats", good(func(r map[string]any) {
			r["seats"] = []string{"G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8", "G9", "G10", "G11"}
		}), 422, "seats"},
		{"no name", good(func(r map[string]any) { r["name"] = "   " }), 422, "name"},
		{"short phone", good(func(r map[string]any) { r["phone"] = "123" }), 422, "phone"},
		{"letters in phone", good(func(r map[string]any) { r["phone"] = "call me" }), 422, "phone"},
		{"card fails Luhn", good(func(r map[string]any) { r["card_number"] = "4242 4242 4242 4241" }), 422, "card_number"},
		{"real card in sandbox", good(func(r map[string]any) { r["card_number"] = "4111 1111 1111 1111" }), 422, "card_number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := c.book(tc.body)
			if status != tc.status || resp.Error == "" || resp.Message == "" {
				t.Fatalf("%d %+v, want %d with an error code and a message", status, resp, tc.status)
			}
			if tc.field != "" && (resp.Field != tc.field || !strings.HasPrefix(resp.Message, tc.field+": ")) {
				t.Errorf("field %q message %q, want the message to name %q", resp.Field, resp.Message, tc.field)
			}
		})
	}
	if after := topicEndOffset(t, c.kc, event.TopicBookingMovie); after != before {
		t.Errorf("booking-movie grew from %d to %d messages: malformed input reached Kafka", before, after)
	}
	var rows int
	if err := c.db().Get(&rows, `SELECT count(*) FROM web.bookings`); err != nil || rows != 0 {
		t.Errorf("%d bookings recorded (err %v) for requests that were all refused", rows, err)
	}
}

// TestFailedTextNeverBlocksAPaidTicket: the SMS provider refuses the number (the sandbox fails
// numbers ending in 0000), yet the paid booking gets its ticket, and the page says the text
// could not be sent.
func TestFailedTextNeverBlocksAPaidTicket(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	req := request(show.ID, []string{"K1"}, cardApproves)
	req["phone"] = "+44 7700 900000"
	status, resp := c.book(req)
	if status != http.StatusAccepted {
		t.Fatalf("%d %+v", status, resp)
	}
	st := c.waitFinal(resp.BookingID)
	if st.Status != "ticketed" || st.Ticket == nil {
		t.Fatalf("status %q, want ticketed despite the failed SMS", st.Status)
	}
	var notified string
	for _, s := range st.Stages {
		if s.Name == "notified" {
			notified = s.Detail
		}
	}
	if !strings.Contains(notified, "could not be sent") {
		t.Errorf("the SMS stage says %q, want it to say the text could not be sent", notified)
	}
	var inbox struct{ Messages []struct{ Body string } }
	c.staffJSON("/api/dev/sms?phone="+url.QueryEscape("+447700900000"), &inbox)
	if len(inbox.Messages) != 0 {
		t.Errorf("the sandbox delivered %d texts to a number it refuses", len(inbox.Messages))
	}
}

// TestManyBuyersOneSeatExactlyOneTicket: concurrent requests for the same seat sell it once.
func TestManyBuyersOneSeatExactlyOneTicket(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	const buyers = 25
	ids := make(chan string, buyers)
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seats := []string{"H7"}
			if i%2 == 1 {
				seats = []string{"H7", "H8"} // overlapping requests must lose whole, not in part
			}
			status, resp := c.book(request(show.ID, seats, cardApproves))
			if status != http.StatusAccepted {
				t.Errorf("buyer %d: %d %+v", i, status, resp)
				return
			}
			ids <- resp.BookingID
		}()
	}
	wg.Wait()
	close(ids)
	ticketed, rejected := 0, 0
	for id := range ids {
		st := c.waitFinal(id)
		switch {
		case st.Status == "ticketed":
			ticketed++
		case st.Status == "rejected" && strings.Contains(st.Reason, "already taken"):
			rejected++
		default:
			t.Errorf("booking %s: %q %q", id, st.Status, st.Reason)
		}
	}
	if ticketed != 1 || rejected != buyers-1 {
		t.Errorf("%d ticketed, %d rejected as taken; want 1 and %d", ticketed, rejected, buyers-1)
	}
	var holders int
	if err := c.db().Get(&holders, `SELECT count(*) FROM ticket.tickets WHERE show_id = $1 AND 'H7' = ANY(seats)`, show.ID); err != nil || holders != 1 {
		t.Errorf("%d tickets for H7 (err %v), want exactly 1", holders, err)
	}
}

// TestServiceRestartResumesFromCommittedOffset runs each part as its own process. With the
// ticket service down, bookings pile up on notification-sent; restarted, it resumes from its
// committed offset: every waiting booking gets its ticket, none gets two.
func TestServiceRestartResumesFromCommittedOffset(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetBooking)
	c.start(TargetPayment)
	c.start(TargetNotification)
	ticketSvc := c.start(TargetTicket)
	show := c.futureShow()

	before := c.waitFinal(c.mustBook(show.ID, []string{"J1"}, cardApproves).BookingID)
	if before.Status != "ticketed" {
		t.Fatalf("before the restart: %q", before.Status)
	}
	ticketSvc.stop(t)

	var waiting []string
	for _, seat := range []string{"J2", "J3", "J4"} {
		waiting = append(waiting, c.mustBook(show.ID, []string{seat}, cardApproves).BookingID)
	}
	for _, id := range waiting {
		eventually(t, "booking "+id+" notified while the ticket service is down", func() bool {
			var st apiStatus
			c.getJSON(c.statusPath(id), &st)
			return st.Status == "notified"
		})
	}

	restarted := c.start(TargetTicket)
	for _, id := range waiting {
		if st := c.waitFinal(id); st.Status != "ticketed" || st.Ticket == nil {
			t.Errorf("booking %s after the restart: %q", id, st.Status)
		}
	}
	var tickets, bookings int
	conn := c.db()
	if err := conn.Get(&tickets, `SELECT count(*) FROM ticket.tickets`); err != nil {
		t.Fatal(err)
	}
	if err := conn.Get(&bookings, `SELECT count(DISTINCT booking_id) FROM ticket.tickets`); err != nil {
		t.Fatal(err)
	}
	if tickets != 4 || bookings != 4 {
		t.Errorf("%d tickets for %d bookings, want 4 for 4", tickets, bookings)
	}
	// Resumed, not restarted from the beginning: the booking handled before the stop was not
	// handed to the new process again.
	if logs := restarted.logs.String(); strings.Contains(logs, before.BookingID) {
		t.Errorf("the restarted ticket service re-read booking %s, which was committed before the stop", before.BookingID)
	}
	if logs := restarted.logs.String(); !strings.Contains(logs, waiting[0]) {
		t.Errorf("the restarted ticket service's logs do not mention booking %s it issued", waiting[0])
	}
}

// TestNotificationRestartWithABacklog: with the notification service down, paid bookings and
// their requests pile up on two topics. Restarted, it must work through both — a payment read
// before its booking's contact waits for it without stopping the contacts from being read.
func TestNotificationRestartWithABacklog(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetBooking)
	c.start(TargetPayment)
	c.start(TargetTicket)
	notifier := c.start(TargetNotification)
	show := c.futureShow()
	notifier.stop(t)

	var ids []string
	for i := range 48 {
		ids = append(ids, c.mustBook(show.ID, []string{fmt.Sprintf("%c%d", 'A'+i/8, 9+i%8)}, cardApproves).BookingID)
	}
	for _, id := range ids {
		eventually(t, "booking "+id+" paid while notification is down", func() bool {
			var st apiStatus
			c.getJSON(c.statusPath(id), &st)
			return st.Status == "paid"
		})
	}
	c.start(TargetNotification)
	for _, id := range ids {
		if st := c.waitFinal(id); st.Status != "ticketed" {
			t.Errorf("booking %s after the restart: %q", id, st.Status)
		}
	}
}

// TestEveryWebReplicaStreamsEveryBooking: two web replicas share the database; a booking made
// on one is followed to the end on the other's SSE stream.
func TestEveryWebReplicaStreamsEveryBooking(t *testing.T) {
	c := startAll(t)
	other := c.startWith(TargetWeb, map[string]string{"WEB_INSTANCE": "second"})
	show := c.futureShow()
	for i := range 5 {
		resp := c.mustBook(show.ID, []string{fmt.Sprintf("L%d", i+1)}, cardApproves)
		events := readSSE(t, other.url+resp.EventsURL, "")
		if got := eventNames(events); !slices.Equal(got, []string{"requested", "confirmed", "paid", "notified", "ticketed", "outcome", "close"}) {
			t.Errorf("booking %d on the second replica's stream: %v", i, got)
		}
	}
}

// TestShutdownEndsOpenStreams: SIGTERM with a browser following an unfinished booking drains
// cleanly and promptly, and the browser's stream ends rather than hanging.
func TestShutdownEndsOpenStreams(t *testing.T) {
	c := newCluster(t)
	web := c.start(TargetWeb) // nothing else: the booking stays "requested"
	show := c.futureShow()
	resp := c.mustBook(show.ID, []string{"M1"}, cardApproves)

	req, _ := http.NewRequest(http.MethodGet, web.url+resp.EventsURL, nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	firstLine := make(chan string, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		scanner := bufio.NewScanner(stream.Body)
		for scanner.Scan() {
			if strings.HasPrefix(scanner.Text(), "event: ") {
				select {
				case firstLine <- scanner.Text():
				default:
				}
			}
		}
	}()
	select {
	case line := <-firstLine:
		if line != "event: requested" {
			t.Fatalf("first event %q, want the requested stage", line)
		}
	case <-time.After(waitForOutcome):
		t.Fatal("no event on the stream")
	}
	web.stop(t) // fails the test if the HTTP server could not shut down cleanly
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("the open stream did not end at shutdown")
	}
}

// --- helpers -------------------------------------------------------------------------------

func stageNames(st apiStatus) []string {
	names := make([]string, len(st.Stages))
	for i, s := range st.Stages {
		names[i] = s.Name
	}
	return names
}

func openDB(t testing.TB, url string) *sqlx.DB {
	t.Helper()
	conn, err := db.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitForOutcome)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("waited %s for %s", waitForOutcome, what)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// topicEndOffset sums the end offsets of a topic's partitions: how many messages it holds.
func topicEndOffset(t testing.TB, kc kafka.Cluster, topic string) int64 {
	t.Helper()
	topic = kc.Topic(topic)
	client := &kafkago.Client{Addr: kafkago.TCP(kc.Brokers...)}
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
	for p := range testPartitions {
		req.Topics[topic] = append(req.Topics[topic], kafkago.LastOffsetOf(p))
	}
	// A topic created a moment ago may have no partition leader yet (real Kafka elects one
	// within a second or so): ask again until every partition answers.
	var lastErr error
	for deadline := time.Now().Add(waitForOutcome); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.ListOffsets(context.Background(), req)
		if err != nil {
			lastErr = err
			continue
		}
		lastErr = nil
		if n := len(resp.Topics[topic]); n != testPartitions {
			lastErr = fmt.Errorf("%d partitions answered, want %d", n, testPartitions)
		}
		var total int64
		for _, p := range resp.Topics[topic] {
			if p.Error != nil {
				lastErr = p.Error
			}
			total += p.LastOffset
		}
		if lastErr == nil {
			return total
		}
	}
	t.Fatalf("end offsets of %s: %v", topic, lastErr)
	return 0
}

// TestRealSMSProviderHidesTheSandboxInbox: with a real SMS provider there is no inbox page
// listing people's texts, and the navigation does not link to one.
func TestRealSMSProviderHidesTheSandboxInbox(t *testing.T) {
	c := newCluster(t)
	c.startWith(TargetWeb, map[string]string{"SMS_PROVIDER": "http", "SMS_API_URL": "http://127.0.0.1:9", "SMS_API_KEY": "k"})
	_, home := c.getPage("/")
	if strings.Contains(home, `href="/dev/sms"`) {
		t.Error("the navigation links to a sandbox inbox that does not exist")
	}
	for _, path := range []string{"/dev/sms", "/api/dev/sms"} {
		if status, _ := c.getPage(path); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, status)
		}
	}
	sandbox := startAll(t)
	if _, home := sandbox.getPage("/"); !strings.Contains(home, `href="/dev/sms"`) {
		t.Error("with the sandbox, the navigation does not link to its inbox")
	}
}

// formSession opens a show's page as a browser does: a client that keeps the site's cookies (and
// does not follow redirects), and the page — whose form carries the session's csrf_token.
func (c *cluster) formSession(showID string) (*http.Client, string) {
	c.t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(c.web.url + "/shows/" + showID)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	return client, string(page)
}

// csrfOf reads the form token from a page.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := regexp.MustCompile(`name="csrf_token" value="([A-Za-z0-9_-]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the page's form has no csrf_token")
	}
	return m[1]
}

// pqUUIDs writes ids as a PostgreSQL array literal.
func pqUUIDs(ids []string) string { return "{" + strings.Join(ids, ",") + "}" }
