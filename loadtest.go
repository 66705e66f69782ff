package main

// boxoffice loadtest: an open-loop load generator for the JSON API. Requests are sent on
// schedule whether or not earlier ones have finished, and each booking's latency is measured from
// the moment it was scheduled, so a slow system cannot hide its slowness by slowing the load
// down (coordinated omission). Every client follows its booking's SSE stream to the end.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// TargetLoadTest drives load at a running Boxoffice and prints what it measured.
const TargetLoadTest = "loadtest"

// loadOptions is what one loadtest run does.
type loadOptions struct {
	BaseURL    string
	MetricsURL string        // the web's /metrics: on its internal port (OPS_ADDR), or for staff only
	Scenario   string        // steady, ramp, hot, idle or all
	Rate       float64       // steady: bookings a second
	Duration   time.Duration // steady and each ramp step
	RampFrom   float64
	RampTo     float64
	RampStep   float64
	Buyers     int // hot: buyers for one show
	HotSeats   int // hot: the size of show to pick
	Streams    int // idle: SSE streams held open
	Timeout    time.Duration
	JSONOut    string
}

func parseLoadOptions(args []string) (loadOptions, error) {
	fs := flag.NewFlagSet(TargetLoadTest, flag.ContinueOnError)
	o := loadOptions{}
	fs.StringVar(&o.BaseURL, "url", "http://127.0.0.1:8080", "the web server to load (BOOKING_RATE_LIMIT=0, SEATS_PER_ADDRESS=0 and STREAMS_PER_ADDRESS=0 there: the load comes from one address)")
	fs.StringVar(&o.MetricsURL, "metrics", "", "idle: the web's metrics on its internal port, like http://127.0.0.1:9100/metrics (OPS_ADDR there)")
	fs.StringVar(&o.Scenario, "scenario", "steady", "steady, ramp, hot, idle or all")
	fs.Float64Var(&o.Rate, "rate", 200, "steady: bookings a second")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "steady: how long; ramp: each step")
	fs.Float64Var(&o.RampFrom, "ramp-from", 100, "ramp: first rate")
	fs.Float64Var(&o.RampTo, "ramp-to", 1500, "ramp: last rate")
	fs.Float64Var(&o.RampStep, "ramp-step", 200, "ramp: rate added each step")
	fs.IntVar(&o.Buyers, "buyers", 10000, "hot: buyers for one show's seats")
	fs.IntVar(&o.HotSeats, "hot-seats", 300, "hot: pick a show with this many free seats if there is one, else the emptiest")
	fs.IntVar(&o.Streams, "streams", 10000, "idle: SSE streams held open on one web process")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "how long one booking may take before it counts as an error")
	fs.StringVar(&o.JSONOut, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch o.Scenario {
	case "steady", "ramp", "hot", "idle", "all":
	default:
		return o, fmt.Errorf("-scenario=%q: want steady, ramp, hot, idle or all", o.Scenario)
	}
	if o.Rate <= 0 || o.RampFrom <= 0 || o.RampTo < o.RampFrom || o.RampStep <= 0 || o.Buyers < 1 || o.Streams < 0 || o.Duration <= 0 {
		return o, errors.New("rates, durations and counts must be positive, and -ramp-to at least -ramp-from")
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	return o, nil
}

func runLoadTest(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseLoadOptions(args)
	if err != nil {
		return err
	}
	lt := newLoadTester(o)
	results, err := lt.run(ctx)
	if len(results) > 0 {
		printResults(stdout, results)
		if o.JSONOut != "" {
			b, _ := json.MarshalIndent(results, "", "  ")
			if werr := os.WriteFile(o.JSONOut, b, 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}

// loadTester holds what every scenario shares: the HTTP client and the seats still to sell.
type loadTester struct {
	o      loadOptions
	client *http.Client
	mu     sync.Mutex
	seats  []seatSlot // free seats, spread over shows, taken from the end
	// hot is the hot show's id, chosen before anything else is booked and kept out of seats.
	hot     loadShow
	hotFree []string
	// buyers numbers the bookings: each is a buyer of its own (its own phone), as the seat cap
	// per buyer sees them, so the cap's cost is measured with it on.
	buyers atomic.Int64
}

type seatSlot struct{ show, seat string }

func newLoadTester(o loadOptions) *loadTester {
	transport := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   4096,
		IdleConnTimeout:       90 * time.Second,
	}
	return &loadTester{o: o, client: &http.Client{Transport: transport}}
}

func (lt *loadTester) run(ctx context.Context) ([]scenarioResult, error) {
	var results []scenarioResult
	wants := func(s string) bool { return lt.o.Scenario == s || lt.o.Scenario == "all" }
	if wants("hot") {
		if err := lt.chooseHotShow(ctx); err != nil {
			return nil, err
		}
	}
	if wants("steady") || wants("ramp") || wants("idle") {
		if err := lt.loadSeats(ctx); err != nil {
			return nil, err
		}
	}
	if wants("steady") {
		results = append(results, lt.steady(ctx, fmt.Sprintf("steady %g/s", lt.o.Rate), lt.o.Rate, lt.o.Duration))
	}
	if wants("ramp") {
		results = append(results, lt.ramp(ctx)...)
	}
	if wants("hot") {
		r, err := lt.hotShow(ctx)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	if wants("idle") {
		r, err := lt.idleStreams(ctx)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, ctx.Err()
}

// --- seats -----------------------------------------------------------------------------------

type loadShow struct {
	ID        string    `json:"id"`
	StartsAt  time.Time `json:"starts_at"`
	SeatsLeft int       `json:"seats_left"`
}

// shows lists every show on sale that starts at least an hour from now.
func (lt *loadTester) shows(ctx context.Context) ([]loadShow, error) {
	var movies struct{ Movies []struct{ ID string } }
	if err := lt.getJSON(ctx, "/api/movies", &movies); err != nil {
		return nil, err
	}
	var out []loadShow
	for _, m := range movies.Movies {
		var shows struct{ Shows []loadShow }
		if err := lt.getJSON(ctx, "/api/shows?movie_id="+url.QueryEscape(m.ID), &shows); err != nil {
			return nil, err
		}
		for _, s := range shows.Shows {
			if time.Until(s.StartsAt) > time.Hour && s.SeatsLeft > 0 {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func (lt *loadTester) freeSeats(ctx context.Context, showID string) ([]string, error) {
	var seats struct {
		Seats []struct{ Label, State string }
	}
	if err := lt.getJSON(ctx, "/api/shows/"+url.PathEscape(showID)+"/seats", &seats); err != nil {
		return nil, err
	}
	var free []string
	for _, s := range seats.Seats {
		if s.State == "free" {
			free = append(free, s.Label)
		}
	}
	return free, nil
}

// loadSeats gathers the free seats of every show, interleaved so that consecutive bookings go
// to different shows (and so to different partitions), as real traffic does.
func (lt *loadTester) loadSeats(ctx context.Context) error {
	shows, err := lt.shows(ctx)
	if err != nil {
		return err
	}
	var perShow [][]seatSlot
	for _, s := range shows {
		if s.ID == lt.hot.ID {
			continue // kept whole for the hot show
		}
		free, err := lt.freeSeats(ctx, s.ID)
		if err != nil {
			return err
		}
		var slots []seatSlot
		for _, label := range free {
			slots = append(slots, seatSlot{s.ID, label})
		}
		perShow = append(perShow, slots)
	}
	for i := 0; ; i++ {
		added := false
		for _, slots := range perShow {
			if i < len(slots) {
				lt.seats = append(lt.seats, slots[i])
				added = true
			}
		}
		if !added {
			break
		}
	}
	slices.Reverse(lt.seats) // taken from the end: the first seats of every show go first
	return nil
}

func (lt *loadTester) takeSeat() (seatSlot, bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if len(lt.seats) == 0 {
		return seatSlot{}, false
	}
	s := lt.seats[len(lt.seats)-1]
	lt.seats = lt.seats[:len(lt.seats)-1]
	return s, true
}

// --- one booking -----------------------------------------------------------------------------

// bookingOutcome is what one client saw of one booking.
type bookingOutcome struct {
	end      string        // ticketed, rejected, failed, or error
	reason   string        // why it was rejected or failed, or what went wrong
	accept   time.Duration // scheduled → 202 Accepted
	total    time.Duration // scheduled → the ticket event received (ticketed only)
	answered time.Duration // scheduled → the final answer, whatever it was
	// stages: each stage's time after the one before, from the events' own timestamps.
	stages map[string]time.Duration
	// delivery: each stage's timestamp → its event received over SSE.
	delivery []time.Duration
	// finished is when the final answer (or the error) came: the run's throughput is counted to
	// the last one.
	finished time.Time
}

// loadStage is a stage event on the JSON stream.
type loadStage struct {
	Name   string    `json:"name"`
	At     time.Time `json:"at"`
	Status string    `json:"status"`
}

// nextPhone is a buyer's own number. None ends in 0000, which the sandbox never texts.
func (lt *loadTester) nextPhone() string {
	n := lt.buyers.Add(1) % 1_000_000
	if n%10_000 == 0 {
		n++
	}
	return fmt.Sprintf("+44 7700 %06d", n)
}

// book sends one booking at its scheduled time and follows its stream to the end.
func (lt *loadTester) book(ctx context.Context, scheduled time.Time, showID string, seats []string) bookingOutcome {
	ctx, cancel := context.WithTimeout(ctx, lt.o.Timeout)
	defer cancel()
	out := bookingOutcome{stages: map[string]time.Duration{}}
	fail := func(reason string) bookingOutcome {
		out.end, out.reason, out.answered, out.finished = "error", reason, time.Since(scheduled), time.Now()
		return out
	}
	body, _ := json.Marshal(map[string]any{"show_id": showID, "seats": seats, "name": "Load Test",
		"phone": lt.nextPhone(), "card_number": "4242 4242 4242 4242"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, lt.o.BaseURL+"/api/bookings", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := lt.client.Do(req)
	if err != nil {
		return fail(errorKind(err))
	}
	var accepted struct {
		EventsURL string `json:"events_url"`
		Error     string `json:"error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&accepted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || err != nil {
		return fail(fmt.Sprintf("HTTP %d %s", resp.StatusCode, accepted.Error))
	}
	out.accept = time.Since(scheduled)

	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, lt.o.BaseURL+accepted.EventsURL, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err = lt.client.Do(req)
	if err != nil {
		return fail("stream: " + errorKind(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Sprintf("stream: HTTP %d", resp.StatusCode))
	}
	var prev time.Time
	err = readEvents(resp.Body, func(ev sseEvent) bool {
		name, data := ev.Name, ev.Data
		received := time.Now()
		switch name {
		case "outcome":
			var final struct{ Status, Reason string }
			_ = json.Unmarshal([]byte(data), &final)
			out.end, out.reason = final.Status, seatLabels.ReplaceAllString(final.Reason, "$1 …")
			out.answered, out.finished = received.Sub(scheduled), received
			if final.Status == "ticketed" {
				out.total = received.Sub(scheduled)
			}
			return false
		case "close":
			return false
		}
		var st loadStage
		if json.Unmarshal([]byte(data), &st) != nil || st.At.IsZero() {
			return true
		}
		if !prev.IsZero() {
			out.stages[st.Name] = st.At.Sub(prev)
		}
		prev = st.At
		out.delivery = append(out.delivery, received.Sub(st.At))
		return true
	})
	if out.end == "" {
		if err == nil {
			err = errors.New("stream ended without an outcome")
		}
		return fail("stream: " + errorKind(err))
	}
	return out
}

// sseEvent is one server-sent event as the wire carries it.
type sseEvent struct {
	ID, Name, Data string
}

// readEvents calls on for each server-sent event until it returns false or the stream ends.
func readEvents(r io.Reader, on func(sseEvent) bool) error {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	var cur sseEvent
	var data []string
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case line == "":
			if cur.Name != "" || len(data) > 0 {
				cur.Data = strings.Join(data, "\n")
				if !on(cur) {
					return nil
				}
			}
			cur, data = sseEvent{}, nil
		case strings.HasPrefix(line, "id: "):
			cur.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
	return scanner.Err()
}

// seatLabels finds the seats named in a reason ("Seats A1, A2 are already taken"), so reasons
// that differ only in their seats are counted together.
var seatLabels = regexp.MustCompile(`\b(Seats?) [A-Z][0-9]+(, [A-Z][0-9]+)*`)

// errorKind shortens an error to what a table can count.
func errorKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// --- scenarios -------------------------------------------------------------------------------

// openLoop starts n bookings at rate a second, each on schedule in its own goroutine, and waits
// for them all. next gives each booking's show and seats, or false when there are none left.
func (lt *loadTester) openLoop(ctx context.Context, rate float64, n int, next func() (string, []string, bool)) ([]bookingOutcome, time.Time) {
	outcomes := make([]bookingOutcome, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		scheduled := start.Add(time.Duration(i) * interval)
		if d := time.Until(scheduled); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		show, seats, ok := next()
		if !ok {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := lt.book(ctx, scheduled, show, seats)
			mu.Lock()
			outcomes = append(outcomes, o)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return outcomes, start
}

func (lt *loadTester) nextFreeSeat() (string, []string, bool) {
	s, ok := lt.takeSeat()
	return s.show, []string{s.seat}, ok
}

// steady books at a fixed rate for a while.
func (lt *loadTester) steady(ctx context.Context, name string, rate float64, d time.Duration) scenarioResult {
	n := int(rate * d.Seconds())
	outcomes, start := lt.openLoop(ctx, rate, n, lt.nextFreeSeat)
	r := summarize(name, rate, outcomes, start)
	if len(outcomes) < n {
		r.Notes = append(r.Notes, fmt.Sprintf("ran out of free seats after %d of %d bookings", len(outcomes), n))
	}
	return r
}

// ramp raises the rate step by step until the system saturates: p99 above 250 ms, or errors.
func (lt *loadTester) ramp(ctx context.Context) []scenarioResult {
	var out []scenarioResult
	for rate := lt.o.RampFrom; rate <= lt.o.RampTo && ctx.Err() == nil; rate += lt.o.RampStep {
		r := lt.steady(ctx, fmt.Sprintf("ramp %g/s", rate), rate, lt.o.Duration)
		out = append(out, r)
		if r.Errors > 0 || r.Total.P99 > 250 || len(r.Notes) > 0 {
			out[len(out)-1].Notes = append(out[len(out)-1].Notes, "saturated: the ramp stops here")
			break
		}
	}
	return out
}

// hotShow sends buyers for one show's seats, each wanting one seat, as fast as they can be sent
// (2,000 a second): exactly the seats' count must be sold, and every buyer answered.
func (lt *loadTester) hotShow(ctx context.Context) (scenarioResult, error) {
	if lt.hot.ID == "" {
		if err := lt.chooseHotShow(ctx); err != nil {
			return scenarioResult{}, err
		}
	}
	hot, free := lt.hot, lt.hotFree
	// Buyers pick seats in a shuffled round: every seat is wanted by Buyers/len(free) of them or
	// more, so the show can sell out, and each buyer's pick is still random.
	order := rand.Perm(len(free))
	next := 0
	rate := 2000.0
	outcomes, start := lt.openLoop(ctx, rate, lt.o.Buyers, func() (string, []string, bool) {
		seat := free[order[next%len(order)]]
		if next++; next%len(order) == 0 {
			order = rand.Perm(len(free))
		}
		return hot.ID, []string{seat}, true
	})
	r := summarize(fmt.Sprintf("hot show: %d buyers, %d seats", lt.o.Buyers, len(free)), rate, outcomes, start)
	// What clients saw within their timeout is not the whole story: once every booking has ended,
	// the show's own seat map says how many were sold.
	sold, held, err := lt.settledSeats(ctx, hot.ID, free)
	switch {
	case err != nil:
		r.Notes = append(r.Notes, "could not read the show's seats: "+err.Error())
	case held > 0:
		r.Notes = append(r.Notes, fmt.Sprintf("MISSED: %d seats still held a minute after the last buyer", held))
	case sold != len(free):
		r.Notes = append(r.Notes, fmt.Sprintf("MISSED: %d seats sold of %d", sold, len(free)))
	default:
		r.Notes = append(r.Notes, fmt.Sprintf("sold exactly the %d seats (the show's seat map, once settled)", sold))
	}
	r.Notes = append(r.Notes, fmt.Sprintf("slowest answer %s", time.Duration(r.Answered.Max*float64(time.Millisecond)).Round(time.Millisecond)))
	return r, nil
}

// chooseHotShow picks the hot show: one with exactly -hot-seats free (the Load Lab's 300-seat
// screen), else the one with the most free seats. It is chosen before the other scenarios book,
// and they leave it alone.
func (lt *loadTester) chooseHotShow(ctx context.Context) error {
	shows, err := lt.shows(ctx)
	if err != nil {
		return err
	}
	var hot loadShow
	var free []string
	for _, s := range shows {
		better := s.SeatsLeft > hot.SeatsLeft && hot.SeatsLeft != lt.o.HotSeats
		if s.SeatsLeft == lt.o.HotSeats && hot.SeatsLeft != lt.o.HotSeats {
			better = true
		}
		if better {
			if f, err := lt.freeSeats(ctx, s.ID); err == nil && len(f) == s.SeatsLeft {
				hot, free = s, f
			}
		}
	}
	if len(free) == 0 {
		return errors.New("hot show: no show with free seats")
	}
	lt.hot, lt.hotFree = hot, free
	return nil
}

// settledSeats waits (up to a minute) until none of the seats among is held, then counts the
// sold ones.
func (lt *loadTester) settledSeats(ctx context.Context, showID string, among []string) (sold, held int, err error) {
	deadline := time.Now().Add(time.Minute)
	for {
		var seats struct {
			Seats []struct{ Label, Status string }
		}
		if err := lt.getJSON(ctx, "/api/shows/"+url.PathEscape(showID)+"/seats", &seats); err != nil {
			return 0, 0, err
		}
		sold, held = 0, 0
		for _, s := range seats.Seats {
			if !slices.Contains(among, s.Label) {
				continue
			}
			switch s.Status {
			case "sold":
				sold++
			case "held":
				held++
			}
		}
		if held == 0 || time.Now().After(deadline) {
			return sold, held, nil
		}
		select {
		case <-ctx.Done():
			return sold, held, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// idleStreams holds many seat-map streams open on the web, as browsers left on a show page do,
// books at a low rate meanwhile, and reads the web's memory from /metrics.
func (lt *loadTester) idleStreams(ctx context.Context) (scenarioResult, error) {
	shows, err := lt.shows(ctx)
	if err != nil {
		return scenarioResult{}, err
	}
	if len(shows) == 0 {
		return scenarioResult{}, errors.New("idle streams: no show on sale")
	}
	before, _ := lt.residentMemory(ctx)
	streamCtx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	var open atomic.Int64
	var wg sync.WaitGroup
	opened := make(chan error, lt.o.Streams)
	pace := time.NewTicker(time.Second / 2000) // browsers arrive over seconds, not all at once
	defer pace.Stop()
	for i := range lt.o.Streams {
		<-pace.C
		show := shows[i%len(shows)].ID
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(streamCtx, http.MethodGet, lt.o.BaseURL+"/shows/"+url.PathEscape(show)+"/seats/events", nil)
			resp, err := lt.client.Do(req)
			if err != nil {
				opened <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				opened <- fmt.Errorf("HTTP %d", resp.StatusCode)
				return
			}
			open.Add(1)
			opened <- nil
			_, _ = io.Copy(io.Discard, resp.Body) // until the test ends
			open.Add(-1)
		}()
	}
	var failed int
	for range lt.o.Streams {
		if err := <-opened; err != nil {
			failed++
		}
	}
	during, _ := lt.residentMemory(ctx)
	rate := 50.0
	r := lt.steady(ctx, fmt.Sprintf("idle: %d SSE streams + %g/s", lt.o.Streams, rate), rate, lt.o.Duration)
	stillOpen := open.Load()
	stopStreams()
	wg.Wait()
	r.Notes = append(r.Notes, fmt.Sprintf("%d streams open (%d could not open, %d still open at the end)", lt.o.Streams-failed, failed, stillOpen),
		fmt.Sprintf("web RSS %s before, %s with the streams open", megabytes(before), megabytes(during)))
	r.WebRSSBytes = during
	return r, nil
}

// residentMemory reads the web process's resident memory from its /metrics.
func (lt *loadTester) residentMemory(ctx context.Context) (float64, error) {
	if lt.o.MetricsURL == "" {
		return 0, errors.New("-metrics not given: the web's memory is read from its internal port's /metrics")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, lt.o.MetricsURL, nil)
	resp, err := lt.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	scanner := bufio.NewScanner(resp.Body)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		if v, ok := strings.CutPrefix(scanner.Text(), "process_resident_memory_bytes "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, errors.New("no process_resident_memory_bytes in /metrics")
}

func megabytes(b float64) string { return fmt.Sprintf("%.0f MB", b/(1<<20)) }

func (lt *loadTester) getJSON(ctx context.Context, path string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, lt.o.BaseURL+path, nil)
	resp, err := lt.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// --- results ---------------------------------------------------------------------------------

// percentiles of one measure, in milliseconds.
type percentiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

func percentilesOf(ds []time.Duration) percentiles {
	if len(ds) == 0 {
		return percentiles{}
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	at := func(q float64) float64 {
		// nearest rank: the smallest value with at least q of the samples at or below it
		i := int(math.Ceil(q*float64(len(sorted)))) - 1
		return float64(sorted[max(i, 0)]) / float64(time.Millisecond)
	}
	return percentiles{N: len(sorted), P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999),
		Max: float64(sorted[len(sorted)-1]) / float64(time.Millisecond)}
}

// scenarioResult is one row of the table.
type scenarioResult struct {
	Name       string                 `json:"name"`
	Rate       float64                `json:"rate_per_s"`
	Sent       int                    `json:"sent"`
	Ticketed   int                    `json:"ticketed"`
	Rejected   map[string]int         `json:"rejected"`
	Failed     map[string]int         `json:"failed"`
	Errors     int                    `json:"errors"`
	ErrorKinds map[string]int         `json:"error_kinds"`
	Throughput float64                `json:"ticketed_per_s"`
	Total      percentiles            `json:"end_to_end"` // scheduled → ticket event received
	Accept     percentiles            `json:"accept"`     // scheduled → 202
	Answered   percentiles            `json:"answered"`   // scheduled → any final answer, errors and timeouts included
	Stages     map[string]percentiles `json:"stages"`     // from event timestamps
	Delivery   percentiles            `json:"sse_delivery"`
	// WebRSSBytes is the web's resident memory with the idle streams open (idle only).
	WebRSSBytes float64  `json:"web_rss_bytes,omitempty"`
	Notes       []string `json:"notes,omitempty"`
}

func summarize(name string, rate float64, outcomes []bookingOutcome, start time.Time) scenarioResult {
	r := scenarioResult{Name: name, Rate: rate, Sent: len(outcomes), Rejected: map[string]int{}, Failed: map[string]int{},
		ErrorKinds: map[string]int{}, Stages: map[string]percentiles{}}
	var total, accept, answered, delivery []time.Duration
	stages := map[string][]time.Duration{}
	var last time.Time
	for _, o := range outcomes {
		if o.finished.After(last) {
			last = o.finished
		}
		switch o.end {
		case "ticketed":
			r.Ticketed++
			total = append(total, o.total)
		case "rejected":
			r.Rejected[o.reason]++
		case "failed":
			r.Failed[o.reason]++
		default:
			r.Errors++
			r.ErrorKinds[o.reason]++
		}
		if o.end != "error" {
			accept = append(accept, o.accept)
		}
		answered = append(answered, o.answered) // an error counts with the time it took to fail
		for name, d := range o.stages {
			stages[name] = append(stages[name], d)
		}
		delivery = append(delivery, o.delivery...)
	}
	r.Total, r.Accept, r.Answered, r.Delivery = percentilesOf(total), percentilesOf(accept), percentilesOf(answered), percentilesOf(delivery)
	for name, ds := range stages {
		r.Stages[name] = percentilesOf(ds)
	}
	// Throughput over the whole run: from the first send to the last answer.
	if span := last.Sub(start); r.Ticketed > 0 && span > 0 {
		r.Throughput = float64(r.Ticketed) / span.Seconds()
	}
	return r
}

func printResults(w io.Writer, results []scenarioResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsent\tticketed\trejected\terrors\ttickets/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	for _, r := range results {
		rejected := 0
		for _, n := range r.Rejected {
			rejected += n
		}
		for _, n := range r.Failed {
			rejected += n
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", r.Name, r.Sent, r.Ticketed, rejected, r.Errors,
			r.Throughput, r.Total.P50, r.Total.P90, r.Total.P99, r.Total.P999, r.Total.Max)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nend to end: scheduled send → ticket event received over SSE, for the ticketed bookings (open loop: a late send\n"+
		"counts against the system); tickets/s: tickets over the time from the first send to the last answer")
	for _, r := range results {
		var stageNames []string
		for name := range r.Stages {
			stageNames = append(stageNames, name)
		}
		order := map[string]int{"confirmed": 1, "rejected": 1, "paid": 2, "failed": 2, "notified": 3, "ticketed": 4}
		slices.SortFunc(stageNames, func(a, b string) int { return order[a] - order[b] })
		var parts []string
		for _, name := range stageNames {
			p := r.Stages[name]
			parts = append(parts, fmt.Sprintf("→%s p50 %.1f p99 %.1f", name, p.P50, p.P99))
		}
		fmt.Fprintf(w, "%s: accepted p50 %.1f p99 %.1f ms; every buyer answered (errors at the time they failed) p50 %.1f p99 %.1f max %.1f ms; stages (ms, from event times) %s; SSE delivery p99 %.1f ms",
			r.Name, r.Accept.P50, r.Accept.P99, r.Answered.P50, r.Answered.P99, r.Answered.Max, strings.Join(parts, ", "), r.Delivery.P99)
		if len(r.ErrorKinds) > 0 {
			fmt.Fprintf(w, "; errors %v", r.ErrorKinds)
		}
		for _, note := range r.Notes {
			fmt.Fprintf(w, "; %s", note)
		}
		fmt.Fprintln(w)
	}
}
