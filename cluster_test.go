package main

import (
	"bufio"
	"cmp"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/booking"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/payment"
)

// freeTCPPorts returns n consecutive free ports on 127.0.0.1.
func freeTCPPorts(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		free := true
		for i := 1; i < n && free; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				free = false
				continue
			}
			_ = l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// TestRunClusterServesBookingsWithReplicas runs scripts/run-cluster.sh (what `make run-cluster`
// runs): every part its own process, two web, booking and payment replicas. Bookings made on one
// web replica are followed stage by stage on the other; booking's and payment's groups each have
// two members; SIGTERM stops every process.
func TestRunClusterServesBookingsWithReplicas(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "boxoffice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dbURL := dbtest.NewURL(t)
	webPort, kafkaPort := freeTCPPorts(t, 2), freeTCPPorts(t, 1)
	clusterDir := t.TempDir()
	kc := kafka.Cluster{Brokers: []string{fmt.Sprintf("127.0.0.1:%d", kafkaPort)}}
	cmd := exec.Command("scripts/run-cluster.sh")
	cmd.Env = append(os.Environ(), "BIN="+bin, fmt.Sprintf("WEB_PORT=%d", webPort), fmt.Sprintf("KAFKA_PORT=%d", kafkaPort),
		"DATABASE_URL="+dbURL, "CLUSTER_DIR="+clusterDir, "KAFKA_PARTITIONS=3", "KAFKA_BROKERS=", "KAFKA_NAMESPACE=")
	if brokers := os.Getenv(realKafkaEnv); brokers != "" {
		kc = kafka.Cluster{Brokers: strings.Split(brokers, ","), Namespace: "cluster-" + fmt.Sprint(time.Now().UnixNano())}
		cmd.Env = append(cmd.Env, "KAFKA_BROKERS="+brokers, "KAFKA_NAMESPACE="+kc.Namespace,
			"KAFKA_REPLICATION_FACTOR="+cmp.Or(os.Getenv(realKafkaReplicasEnv), "1"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever is left, if the test failed
		if t.Failed() {
			for _, name := range []string{"broker", "web-1", "web-2", "booking-1", "payment-1", "ticket"} {
				if data, err := os.ReadFile(filepath.Join(clusterDir, "logs", name+".log")); err == nil {
					t.Logf("%s.log:\n%s", name, data[max(0, len(data)-2000):])
				}
			}
		}
	})
	var output []string
	for running := false; !running; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("run-cluster.sh ended before it was running:\n%s", strings.Join(output, "\n"))
			}
			output = append(output, line)
			running = strings.Contains(line, "is running at")
		case <-time.After(90 * time.Second):
			t.Fatalf("run-cluster.sh not running after 90 s:\n%s", strings.Join(output, "\n"))
		}
	}
	go func() {
		for range lines { // keep the pipe drained
		}
	}()

	web1 := &cluster{t: t, dbURL: dbURL, kc: kc, web: &process{url: fmt.Sprintf("http://127.0.0.1:%d", webPort)}}
	web2 := &cluster{t: t, dbURL: dbURL, kc: kc, web: &process{url: fmt.Sprintf("http://127.0.0.1:%d", webPort+1)}}
	show := web1.futureShow()
	var ids []string
	for i := range 8 {
		ids = append(ids, web2.mustBook(show.ID, []string{fmt.Sprintf("J%d", i+1)}, cardApproves).BookingID)
	}
	for _, id := range ids {
		names := eventNames(readSSE(t, web1.web.url+"/api/bookings/"+id+"/events", ""))
		if len(names) == 0 || names[len(names)-2] != "outcome" || !strings.Contains(strings.Join(names, " "), "ticketed") {
			t.Errorf("booking %s made on web-2, followed on web-1: %v, want every stage to the ticket", id, names)
		}
	}
	for _, group := range []string{booking.GroupID, payment.GroupID} {
		if n, err := kafka.GroupMembers(t.Context(), kc, group); err != nil || n != 2 {
			t.Errorf("group %s has %d members (err %v), want its two replicas", group, n, err)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(45 * time.Second):
		t.Fatal("run-cluster.sh did not stop within 45 s of SIGTERM")
	}
	if out, err := exec.Command("pgrep", "-f", bin).Output(); err == nil {
		t.Errorf("processes still running after run-cluster.sh stopped: %s", out)
	}
}
