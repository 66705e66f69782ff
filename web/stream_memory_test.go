package web

import (
	"bufio"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestAnIdleSeatMapKeepsALeanStack: a seat map's stream waits, for hours maybe, under every
// middleware's frame. With goroutines started on the smallest stack (GODEBUG=
// adaptivestackstart=0, as every Boxoffice process runs), the frames it waits under must stay
// under a quarter of the 16 KB its request grew to, or its stack never shrinks back to 8 KB:
// one middleware frame too many cost 8 KB a stream, 80 MB with 10,000 seat maps open. The
// measurement runs in a process of its own, started with that setting.
func TestAnIdleSeatMapKeepsALeanStack(t *testing.T) {
	if os.Getenv("BOXOFFICE_STACK_PROBE") != "" {
		fmt.Printf("stack a stream: %d\n", stackPerIdleSeatMap(t))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAnIdleSeatMapKeepsALeanStack$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BOXOFFICE_STACK_PROBE=1", "GODEBUG=adaptivestackstart=0")
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`stack a stream: (\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("the probe: %v\n%s", err, out)
	}
	perStream, _ := strconv.Atoi(string(m[1]))
	t.Logf("%d bytes of stack an idle seat map", perStream)
	if perStream > 18<<10 {
		t.Errorf("an idle seat map's stream holds %d bytes of stack, want about 14.5 KB: a frame it waits under grew (see admit)", perStream)
	}
}

// stackPerIdleSeatMap opens 1,000 seat-map streams on the whole web and measures the stack they
// hold once idle.
func stackPerIdleSeatMap(t *testing.T) int {
	clock := &testClock{at: time.Now()}
	s, conn := newTestServer(t, clock, func(d *Deps) { d.RequestBodyTimeout, d.StreamsMax = 10*time.Second, 20000 })
	var show string
	if err := conn.QueryRow(`SELECT id FROM catalog.shows WHERE starts_at > now() ORDER BY starts_at LIMIT 1`).Scan(&show); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	stacks := func() uint64 {
		runtime.GC()
		runtime.GC() // the second collection shrinks what the first found idle
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse
	}
	before := stacks()
	const n = 1000
	for range n {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /shows/%s/seats/events HTTP/1.1\r\nHost: x\r\n\r\n", show)
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	return int((stacks() - before) / n)
}
