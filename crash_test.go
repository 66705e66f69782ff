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
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		childTargetEnv+"="+target,
		"DATABASE_URL="+c.dbURL,
		"KAFKA_BROKERS="+strings.Join(c.brokers, ","),
		fmt.Sprintf("KAFKA_PARTITIONS=%d", testPartitions),
		"LOG_LEVEL=warn",
	)
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
	return cmd
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
