//go:build chaos

package main

// The crash test: every part of Boxoffice as its own OS process — the broker and PostgreSQL
// included — under booking load, SIGKILLed at random moments and restarted after a random
// pause. Then, with the load stopped and the pipeline drained, the databases must show that
// every booking ended exactly once and nothing was sold, charged, texted or ticketed twice.
//
//	make chaos KILLS=200          # or: go test -tags chaos -run TestChaos -count=1 . -args -kills=200

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db"
)

var (
	chaosKills = flag.Int("kills", 50, "how many processes the crash test kills")
	chaosSeed  = flag.Uint64("seed", 0, "the random seed of victims and pauses (0: a new one, printed, to rerun a failure)")
	chaosKafka = flag.String("kafka", "embedded", "the broker: embedded (the -target=broker process) or apache (three Apache Kafka brokers, replication 3)")
)

// part is one process of the system that the test can kill and start again.
type part struct {
	name  string
	start func() (*exec.Cmd, error)
	kill  func(*exec.Cmd) error
	cmd   *exec.Cmd
}

// freePortRange finds n consecutive free ports, and the n at +100 (Kafka's controllers), for
// scripts/kafka.sh's BOXOFFICE_KAFKA_CLUSTER_PORT.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 30000 + rand.IntN(20000)
		free := true
		for _, port := range []int{base, base + 100} {
			for i := range n {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+i))
				if err != nil {
					free = false
					continue
				}
				_ = ln.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no free range of ports")
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestChaos(t *testing.T) {
	repo, _ := os.Getwd()
	pgDir := filepath.Join("/var/tmp", "boxoffice-chaos-"+uuid.NewString()[:8]) // reachable by the postgres user
	pgPort := freePort(t)
	pgEnv := append(os.Environ(), "BOXOFFICE_PG_DIR="+pgDir, fmt.Sprintf("BOXOFFICE_PG_PORT=%d", pgPort), "DATABASE_URL=")
	pgScript := func(cmd string) error {
		c := exec.Command(filepath.Join(repo, "scripts/postgres.sh"), cmd)
		c.Env = pgEnv
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("postgres.sh %s: %v: %s", cmd, err, out)
		}
		return nil
	}
	if err := pgScript("start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgScript("stop"); _ = os.RemoveAll(pgDir) })
	dbURL := fmt.Sprintf("postgres://boxoffice:boxoffice@127.0.0.1:%d/boxoffice?sslmode=disable", pgPort)
	brokerPort, webPort := freePort(t), freePort(t)
	kafkaDir := t.TempDir()
	webURL := fmt.Sprintf("http://127.0.0.1:%d", webPort)
	logs := t.TempDir()
	if keep := os.Getenv("BOXOFFICE_CHAOS_LOGS"); keep != "" {
		logs = keep // kept after the run, for a failure's post-mortem
	}

	// exits holds, per started process, a channel closed when it exits: a part can also end by
	// itself (say, started while the broker it needs was still down), and then, as a supervisor
	// such as systemd would, the test starts it again.
	var exits sync.Map // *exec.Cmd → chan struct{}
	hasExited := func(cmd *exec.Cmd) bool {
		done, ok := exits.Load(cmd)
		if !ok {
			return false
		}
		select {
		case <-done.(chan struct{}):
			return true
		default:
			return false
		}
	}
	kafkaEnv := []string{fmt.Sprintf("KAFKA_BROKERS=127.0.0.1:%d", brokerPort)}
	var kafkaParts []*part
	switch *chaosKafka {
	case "embedded":
	case "apache":
		// Three Apache Kafka brokers of the test's own (scripts/kafka.sh), each a victim like
		// any other part; with replication 3 and min.insync.replicas 2 one may be down at a time.
		home, base := t.TempDir(), freePortRange(t, 3)
		kafkaScript := func(args ...string) error {
			c := exec.Command(filepath.Join(repo, "scripts/kafka.sh"), args...)
			c.Env = append(os.Environ(), "BOXOFFICE_KAFKA_HOME="+home, fmt.Sprintf("BOXOFFICE_KAFKA_CLUSTER_PORT=%d", base))
			out, err := c.CombinedOutput()
			if err != nil {
				return fmt.Errorf("kafka.sh %v: %v: %s", args, err, out)
			}
			return nil
		}
		if err := kafkaScript("start", "3"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kafkaScript("reset", "3") })
		kafkaEnv = []string{fmt.Sprintf("KAFKA_BROKERS=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base, base+1, base+2), "KAFKA_REPLICATION_FACTOR=3"}
		for i := range 3 {
			node := fmt.Sprint(i + 1)
			kafkaParts = append(kafkaParts, &part{name: "kafka-" + node,
				start: func() (*exec.Cmd, error) { return nil, kafkaScript("restart", node, "3") },
				kill:  func(*exec.Cmd) error { return kafkaScript("kill", node, "3") }})
		}
	default:
		t.Fatalf("-kafka=%q: want embedded or apache", *chaosKafka)
	}
	child := func(target string, extra ...string) func() (*exec.Cmd, error) {
		return func() (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), append(append([]string{
				childTargetEnv + "=" + target, "DATABASE_URL=" + dbURL, "KAFKA_PARTITIONS=3", "LOG_LEVEL=warn", "BOOKING_RATE_LIMIT=0",
				"SEATS_PER_BUYER=0", "SEATS_PER_ADDRESS=0", // one buyer books the hot show whole
				// Outages here last seconds, so a minute of retries is plenty; and a group member
				// the embedded broker keeps after a kill is then noticed within 90 s, not 10 min.
				"CONSUMER_MAX_STALL=60s",
			}, kafkaEnv...), extra...)...)
			f, err := os.OpenFile(filepath.Join(logs, target+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				return nil, err
			}
			cmd.Stdout, cmd.Stderr = f, f
			if err := cmd.Start(); err != nil {
				return nil, err
			}
			done := make(chan struct{})
			exits.Store(cmd, done)
			go func() { _ = cmd.Wait(); _ = f.Close(); close(done) }()
			return cmd, nil
		}
	}
	sigkill := func(cmd *exec.Cmd) error { return cmd.Process.Signal(syscall.SIGKILL) }
	parts := []*part{
		{name: "postgres", start: func() (*exec.Cmd, error) { return nil, pgScript("start") }, kill: func(*exec.Cmd) error { return pgScript("crash") }},
		{name: "web", start: child(TargetWeb, fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", webPort)), kill: sigkill},
		// A short hold, so that killing payment (or the broker) makes holds run out and late
		// payments happen: their refunds are part of what is checked.
		{name: "booking", start: child(TargetBooking, "HOLD_DURATION="+chaosHold), kill: sigkill},
		{name: "payment", start: child(TargetPayment), kill: sigkill},
		{name: "notification", start: child(TargetNotification), kill: sigkill},
		{name: "ticket", start: child(TargetTicket), kill: sigkill},
	}
	if *chaosKafka == "embedded" {
		embedded := &part{name: "broker", start: child(TargetBroker, "KAFKA_BROKERS=", "KAFKA_DATA_DIR="+kafkaDir, fmt.Sprintf("KAFKA_EMBEDDED_PORT=%d", brokerPort)), kill: sigkill}
		parts = append([]*part{embedded}, parts...)
	}
	for _, p := range parts {
		if p.name == "postgres" {
			continue
		}
		cmd, err := p.start()
		if err != nil {
			t.Fatal(err)
		}
		p.cmd = cmd
		if p.name == "broker" {
			waitListening(t, fmt.Sprintf("127.0.0.1:%d", brokerPort))
		}
	}
	parts = append(parts, kafkaParts...) // already running
	t.Cleanup(func() {
		for _, p := range parts {
			if p.cmd != nil {
				_ = p.cmd.Process.Kill()
			}
		}
	})
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", webPort))

	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -args -seed=%d)", seed, seed)
	hotShows, openShows := chaosShows(t, webURL)
	ctx, stopLoad := context.WithCancel(context.Background())
	var accepted sync.Map // booking id → true
	var trials, refusedAtDoor atomic.Int64
	var load sync.WaitGroup
	for worker := range 6 {
		load.Add(1)
		go func() {
			defer load.Done()
			r := rand.New(rand.NewPCG(uint64(worker), seed))
			for ctx.Err() == nil {
				trials.Add(1)
				// Half the buyers fight over 18 seats of three shows; the others pick any of the
				// 60 seats (A1–F10) every screen has, in any other show, and mostly get them.
				show := hotShows[r.IntN(len(hotShows))]
				seats := []string{fmt.Sprintf("%c%d", 'A'+r.IntN(3), 1+r.IntN(6))}
				if r.IntN(2) == 0 {
					show = openShows[r.IntN(len(openShows))]
					seats = []string{fmt.Sprintf("%c%d", 'A'+r.IntN(6), 1+r.IntN(10))}
				}
				card := cardApproves
				if r.IntN(4) == 0 {
					card = cardDeclined
				}
				if id, ok := bookWithRetries(ctx, webURL, show, seats, card); ok {
					accepted.Store(id, true)
				} else {
					refusedAtDoor.Add(1)
				}
				time.Sleep(time.Duration(20+r.IntN(60)) * time.Millisecond)
			}
		}()
	}

	selfExits := map[string]int{}
	supervise := func() {
		for _, p := range parts {
			if p.cmd == nil || !hasExited(p.cmd) {
				continue
			}
			selfExits[p.name]++
			t.Logf("%s exited by itself (%s); starting it again", p.name, lastLogLine(filepath.Join(logs, p.name+".log")))
			cmd, err := restart(p)
			if err != nil {
				t.Fatalf("restart %s: %v", p.name, err)
			}
			p.cmd = cmd
		}
	}
	killer := rand.New(rand.NewPCG(seed, 7))
	counts := map[string]int{}
	for range *chaosKills {
		time.Sleep(time.Duration(300+killer.IntN(900)) * time.Millisecond)
		supervise()
		p := parts[killer.IntN(len(parts))]
		if err := p.kill(p.cmd); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("kill %s: %v", p.name, err)
		}
		counts[p.name]++
		time.Sleep(time.Duration(100+killer.IntN(900)) * time.Millisecond)
		cmd, err := restart(p)
		if err != nil {
			t.Fatalf("restart %s: %v", p.name, err)
		}
		p.cmd = cmd
	}
	supervise()
	stopLoad()
	load.Wait()

	conn := waitForDB(t, dbURL)
	var ids []string
	accepted.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	deadline := time.Now().Add(5 * time.Minute)
	var unfinished int
	for {
		if err := conn.Get(&unfinished, `SELECT count(*) FROM unnest($1::uuid[]) AS a(id)
			LEFT JOIN web.bookings b ON b.id = a.id
			WHERE b.status IS NULL OR b.status NOT IN ('ticketed', 'rejected', 'failed')`, pqUUIDs(ids)); err != nil {
			t.Logf("drain: %v", err) // PostgreSQL may just be coming back
		} else if unfinished == 0 {
			break
		}
		supervise()
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}

	violations := chaosViolations(t, conn, ids)
	if unfinished > 0 {
		violations = append(violations, fmt.Sprintf("%d accepted bookings never reached an end", unfinished))
	}
	var ends struct {
		Ticketed    int `db:"ticketed"`
		Declined    int `db:"declined"`
		HoldExpired int `db:"hold_expired"`
		Refunded    int `db:"refunded"`
	}
	if err := conn.Get(&ends, `SELECT
		(SELECT count(*) FROM ticket.tickets) AS ticketed,
		(SELECT count(*) FROM payment.payments WHERE status = 'failed' AND failure_code <> 'hold_expired') AS declined,
		(SELECT count(*) FROM payment.payments WHERE failure_code = 'hold_expired') AS hold_expired,
		(SELECT count(*) FROM payment.payments WHERE status = 'refunded') AS refunded`); err != nil {
		t.Errorf("count the ends: %v", err)
	}
	t.Logf("trials %d, accepted %d, refused at the door %d; kills %d: %v; restarted after exiting by themselves: %v; violations %d",
		trials.Load(), len(ids), refusedAtDoor.Load(), *chaosKills, counts, selfExits, len(violations))
	t.Logf("ends: %d ticketed, %d declined, %d holds ran out uncharged, %d late payments refunded (hold %s)",
		ends.Ticketed, ends.Declined, ends.HoldExpired, ends.Refunded, chaosHold)
	for _, v := range violations {
		t.Error(v)
	}
	if t.Failed() {
		for _, p := range parts {
			if data, err := os.ReadFile(filepath.Join(logs, p.name+".log")); err == nil && len(data) > 0 {
				tail := data[max(0, len(data)-3000):]
				t.Logf("tail of %s's log:\n%s", p.name, tail)
			}
		}
	}
}

// lastLogLine is the last line a part logged: why it exited, usually.
func lastLogLine(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return lines[len(lines)-1]
}

func restart(p *part) (*exec.Cmd, error) {
	var last error
	for range 20 {
		cmd, err := p.start()
		if err == nil {
			return cmd, nil
		}
		last = err
		time.Sleep(500 * time.Millisecond)
	}
	return nil, last
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s after 60s", addr)
}

func waitForDB(t *testing.T, url string) *sqlx.DB {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if conn, err := db.Open(context.Background(), url); err == nil {
			t.Cleanup(func() { conn.Close() })
			return conn
		}
	}
	t.Fatal("PostgreSQL did not come back")
	return nil
}

// chaosShows splits the future shows: three hot ones that buyers fight over, and all the others,
// where most bookings find a free seat and so go on to payment, SMS and ticket.
func chaosShows(t *testing.T, webURL string) (hot, open []string) {
	t.Helper()
	getJSON := func(path string, out any) {
		resp, err := http.Get(webURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	var movies struct {
		Movies []struct{ ID string } `json:"movies"`
	}
	getJSON("/api/movies", &movies)
	for _, m := range movies.Movies {
		var out struct {
			Shows []struct {
				ID       string    `json:"id"`
				StartsAt time.Time `json:"starts_at"`
			}
		}
		getJSON("/api/shows?movie_id="+m.ID, &out)
		for _, s := range out.Shows {
			switch {
			case time.Until(s.StartsAt) < time.Hour:
			case len(hot) < 3:
				hot = append(hot, s.ID)
			default:
				open = append(open, s.ID)
			}
		}
	}
	if len(hot) < 3 || len(open) == 0 {
		t.Fatalf("%d hot and %d open shows: not enough to book", len(hot), len(open))
	}
	return hot, open
}

// bookWithRetries books like a careful client: one idempotency key, retried through
// connection errors and 5xx while the web or its database is down.
func bookWithRetries(ctx context.Context, webURL, show string, seats []string, card string) (string, bool) {
	body, _ := json.Marshal(request(show, seats, card))
	key := uuid.NewString()
	client := &http.Client{Timeout: 5 * time.Second}
	for attempt := 0; attempt < 60 && ctx.Err() == nil; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, webURL+"/api/bookings", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err == nil {
			var out bookingResponse
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return out.BookingID, true
			}
			if resp.StatusCode < 500 {
				return "", false
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return "", false
}

// chaosHold is the seat hold under chaos: long enough for a healthy pipeline (tens of ms), short
// enough that kills make some holds run out.
const chaosHold = "3s"

// chaosViolations checks the promises from the databases.
func chaosViolations(t *testing.T, conn *sqlx.DB, ids []string) []string {
	t.Helper()
	var out []string
	check := func(what, query string, args ...any) {
		var n int
		if err := conn.Get(&n, query, args...); err != nil {
			out = append(out, fmt.Sprintf("%s: query failed: %v", what, err))
			return
		}
		if n != 0 {
			out = append(out, fmt.Sprintf("%s: %d", what, n))
		}
	}
	check("seats sold to two ticketed bookings", `SELECT count(*) FROM (
		SELECT show_id, seat FROM web.bookings, unnest(seats) AS seat WHERE status = 'ticketed'
		GROUP BY show_id, seat HAVING count(*) > 1) d`)
	check("seats held by bookings that failed or were rejected", `SELECT count(*) FROM booking.held_seats h
		JOIN booking.bookings b ON b.id = h.booking_id WHERE b.status IN ('failed', 'rejected')`)
	// Money: every approved charge ends in a ticket or a refund, never both, never neither.
	check("approved charges neither ticketed nor refunded", `SELECT count(*) FROM payment_sandbox.charges c
		WHERE c.approved AND NOT EXISTS (SELECT 1 FROM ticket.tickets t WHERE t.booking_id::text = c.idempotency_key)
		AND NOT EXISTS (SELECT 1 FROM payment_sandbox.refunds r WHERE r.charge_reference = c.reference)`)
	check("refunded charges with a ticket", `SELECT count(*) FROM payment_sandbox.refunds r
		JOIN payment_sandbox.charges c ON c.reference = r.charge_reference
		WHERE EXISTS (SELECT 1 FROM ticket.tickets t WHERE t.booking_id::text = c.idempotency_key)`)
	check("tickets without an approved, unrefunded charge", `SELECT count(*) FROM ticket.tickets t
		WHERE NOT EXISTS (SELECT 1 FROM payment_sandbox.charges c WHERE c.idempotency_key = t.booking_id::text AND c.approved
			AND NOT EXISTS (SELECT 1 FROM payment_sandbox.refunds r WHERE r.charge_reference = c.reference))`)
	check("payments left open (charging or expiring)", `SELECT count(*) FROM payment.payments WHERE status IN ('charging', 'expiring')`)
	check("refunded payments whose booking did not fail", `SELECT count(*) FROM payment.payments p
		JOIN booking.bookings b ON b.id = p.booking_id WHERE p.status = 'refunded' AND b.status <> 'failed'`)
	check("paid bookings without a ticket", `SELECT count(*) FROM payment.payments p
		WHERE p.status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM ticket.tickets t WHERE t.booking_id = p.booking_id)`)
	// The phone (the sandbox inbox) must hold exactly one text per text the service recorded as
	// delivered: a resend after a crash would show up as one more.
	check("texts in the inbox beyond those recorded as delivered", `SELECT (SELECT count(*) FROM sms_sandbox.messages)
		- (SELECT count(*) FROM notification.messages WHERE status = 'delivered')`)
	check("unrefunded approved charges beyond the payments recorded as succeeded", `SELECT (SELECT count(*) FROM payment_sandbox.charges c
			WHERE approved AND NOT EXISTS (SELECT 1 FROM payment_sandbox.refunds r WHERE r.charge_reference = c.reference))
		- (SELECT count(*) FROM payment.payments WHERE status = 'succeeded')`)
	check("events still waiting in an outbox", `SELECT (SELECT count(*) FROM web.outbox) + (SELECT count(*) FROM booking.outbox)
		+ (SELECT count(*) FROM payment.outbox) + (SELECT count(*) FROM notification.outbox) + (SELECT count(*) FROM ticket.outbox)`)
	check("web status disagreeing with the ticket service", `SELECT count(*) FROM web.bookings b
		WHERE (b.status = 'ticketed') <> EXISTS (SELECT 1 FROM ticket.tickets t WHERE t.booking_id = b.id)`)
	check("accepted bookings unknown to the booking service", `SELECT count(*) FROM unnest($1::uuid[]) AS a(id)
		WHERE NOT EXISTS (SELECT 1 FROM booking.bookings b WHERE b.id = a.id)`, pqUUIDs(ids))
	check("bookings whose web status and booking-service status disagree", `SELECT count(*) FROM web.bookings w
		JOIN booking.bookings b ON b.id = w.id
		WHERE (w.status = 'rejected') <> (b.status = 'rejected') OR (w.status = 'failed') <> (b.status = 'failed')`)
	return out
}
