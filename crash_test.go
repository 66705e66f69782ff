package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childTargetEnv makes the test binary run one boxoffice target instead of the tests, so a test
// can run a service as a real OS process and kill it with SIGKILL.
const childTargetEnv = "BOXOFFICE_TEST_CHILD_TARGET"

func TestMain(m *testing.M) {
	if target := os.Getenv(childTargetEnv); target != "" {
		cfg, err := LoadConfig(os.Getenv)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if err := run(ctx, target, cfg, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startChild runs a target as its own OS process against the cluster.
func (c *cluster) startChild(target string) *exec.Cmd {
	c.t.Helper()
	cmd, _ := c.startChildWith(target, "LOG_LEVEL=warn")
	return cmd
}

// startChildWith runs a target as its own OS process with extra environment, and returns its
// logs too.
func (c *cluster) startChildWith(target string, extraEnv ...string) (*exec.Cmd, *syncBuffer) {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childTargetEnv+"="+target, "DATABASE_URL="+c.dbURL, "BOOKING_RATE_LIMIT=0",
		"SEATS_PER_BUYER=0", "SEATS_PER_ADDRESS=0")
	for k, v := range c.kafkaEnv() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if c.t.Failed() {
			c.t.Logf("logs of the %s process:\n%s", target, logs)
		}
	})
	return cmd, logs
}

// TestKilledServiceLosesNothing runs the ticket service as a real process and SIGKILLs it in
// the middle of a burst of bookings — no drain, no commit, no goodbye to the consumer group.
// Restarted, it resumes from its last committed offset: every booking gets exactly one ticket.
func TestKilledServiceLosesNothing(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetBooking)
	c.start(TargetPayment)
	c.start(TargetNotification)
	ticketProcess := c.startChild(TargetTicket)
	show := c.futureShow()

	const bookings = 40
	ids := make(chan string, bookings)
	var wg sync.WaitGroup
	for i := range bookings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seat := fmt.Sprintf("%c%d", 'A'+i/16, 1+i%16)
			ids <- c.mustBook(show.ID, []string{seat}, cardApproves).BookingID
		}()
		time.Sleep(10 * time.Millisecond) // a stream, not one burst: the kill lands mid-way
		if i == bookings/3 {
			eventually(t, "the first tickets", func() bool { return c.ticketCount() > 0 })
			if err := ticketProcess.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = ticketProcess.Wait()
			t.Logf("ticket process killed with %d tickets issued", c.ticketCount())
		}
	}
	wg.Wait()
	close(ids)

	c.startChild(TargetTicket)
	for id := range ids {
		if st := c.waitFinal(id); st.Status != "ticketed" {
			t.Errorf("booking %s: %q", id, st.Status)
		}
	}
	if n := c.ticketCount(); n != bookings {
		t.Errorf("%d tickets for %d bookings", n, bookings)
	}
}

func (c *cluster) ticketCount() int {
	c.t.Helper()
	var n int
	if err := c.db().Get(&n, `SELECT count(*) FROM ticket.tickets`); err != nil {
		c.t.Fatal(err)
	}
	return n
}

// TestKilledReplicaHandsItsPartitionsOver runs two payment replicas as OS processes in one
// consumer group, both with partitions, and SIGKILLs one for good. Its partitions move to the
// survivor: every booking made after the kill is paid and ticketed once, and the time the
// hand-over took is printed (the consumer settings aim at about 6 s).
func TestKilledReplicaHandsItsPartitionsOver(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetBooking)
	c.start(TargetNotification)
	c.start(TargetTicket)
	// One member each (CONSUMER_READERS=1): with several per process and three partitions, the
	// group may give one process every partition, and this test needs both to hold some.
	doomed, doomedLogs := c.startChildWith(TargetPayment, "LOG_LEVEL=debug", "CONSUMER_READERS=1")
	_, survivorLogs := c.startChildWith(TargetPayment, "LOG_LEVEL=debug", "CONSUMER_READERS=1")
	show := c.futureShow()

	// Book until each replica has charged some: then both hold partitions.
	handled := func(logs *syncBuffer) bool {
		return strings.Contains(logs.String(), `"type":"booking.seats_confirmed"`)
	}
	seat := 0
	nextSeat := func() string { seat++; return fmt.Sprintf("%c%d", 'A'+(seat-1)/16, 1+(seat-1)%16) }
	eventually(t, "both payment replicas charging", func() bool {
		if st := c.waitFinal(c.mustBook(show.ID, []string{nextSeat()}, cardApproves).BookingID); st.Status != "ticketed" {
			t.Fatalf("before the kill: %q (%q)", st.Status, st.Reason)
		}
		return handled(doomedLogs) && handled(survivorLogs)
	})

	if err := doomed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.Wait()
	killedAt := time.Now()
	const after = 12 // across 3 partitions: the dead replica's share among them
	ids := make([]string, after)
	for i := range ids {
		ids[i] = c.mustBook(show.ID, []string{nextSeat()}, cardApproves).BookingID
	}
	for _, id := range ids {
		if st := c.waitFinal(id); st.Status != "ticketed" {
			t.Errorf("booking %s after the kill: %q (%q)", id, st.Status, st.Reason)
		}
	}
	t.Logf("all %d bookings made after the kill ticketed %.1f s after it", after, time.Since(killedAt).Seconds())
	var charges, tickets int
	if err := c.db().Get(&charges, `SELECT count(*) FROM payment_sandbox.charges WHERE idempotency_key = ANY($1::text[])`, pqUUIDs(ids)); err != nil {
		t.Fatal(err)
	}
	if err := c.db().Get(&tickets, `SELECT count(*) FROM ticket.tickets WHERE booking_id = ANY($1::uuid[])`, pqUUIDs(ids)); err != nil {
		t.Fatal(err)
	}
	if charges != after || tickets != after {
		t.Errorf("%d charges and %d tickets for %d bookings, want one of each per booking", charges, tickets, after)
	}
}
