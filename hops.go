package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"
)

// TargetHops reads a debug log (LOG_LEVEL=debug, JSON lines) and prints where each hop's time
// went: for every consumer, how long its events waited from being sent to being handled (the
// broker and the client's fetch) and how long handling took (the service's database work); for
// every outbox relay, its drains' take, publish and commit, and its fast lane's publish and delete. scripts/hops.sh runs a light load and feeds
// its log here.
const TargetHops = "hops"

// hopLine is what the summary reads from a log line: a consumer's "event handled" or a relay's
// "outbox published" (slog writes durations as nanoseconds).
type hopLine struct {
	Msg      string        `json:"msg"`
	Service  string        `json:"service"`
	Group    string        `json:"group"`
	Topic    string        `json:"topic"`
	Waited   time.Duration `json:"waited"`
	Took     time.Duration `json:"took"`
	Outbox   string        `json:"outbox"`
	Messages int           `json:"messages"`
	Lane     string        `json:"lane"` // "fast": the relay's fast lane, not a drain
	Take     time.Duration `json:"take"`
	Publish  time.Duration `json:"publish"`
	Commit   time.Duration `json:"commit"`
}

// hopStep is one row of the summary: one part of a hop and its timings.
type hopStep struct {
	Where string      `json:"where"` // "booking reads booking-movie", "booking.outbox relay"
	Step  string      `json:"step"`  // waited, handled; take, publish, commit
	Times percentiles `json:"times"`
}

func runHops(args []string, stdin io.Reader, stdout io.Writer) error {
	in := stdin
	if len(args) > 1 {
		return fmt.Errorf("hops: want at most one log file, got %q", args)
	}
	if len(args) == 1 {
		f, err := os.Open(args[0])
		if err != nil {
			return fmt.Errorf("hops: %w", err)
		}
		defer f.Close()
		in = f
	}
	steps, err := summarizeHops(in)
	if err != nil {
		return err
	}
	if len(steps) == 0 {
		return fmt.Errorf("hops: no \"event handled\" or \"outbox published\" lines: was the log written with LOG_LEVEL=debug?")
	}
	tw := tabwriter.NewWriter(stdout, 4, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "where\tstep\tn\tp50 ms\tp90 ms\tp99 ms\t")
	for _, s := range steps {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t\n", s.Where, s.Step, s.Times.N, s.Times.P50, s.Times.P90, s.Times.P99)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "waited: from the producer sending the event to its handler starting (the broker, the client's fetch, events ahead of it);")
	fmt.Fprintln(stdout, "handled: the handler (database work and commit; a batch's whole time, once for each of its events);")
	fmt.Fprintln(stdout, "take: BEGIN and the locking delete of a drain's rows (the fast lane publishes committed events from memory, without one);")
	fmt.Fprintln(stdout, "publish: until the broker acknowledged; commit: the delete (its commit, or the fast lane's statement), after the event is on its way")
	return nil
}

// summarizeHops groups a log's timings by consumer and relay, in a stable order.
func summarizeHops(r io.Reader) ([]hopStep, error) {
	type key struct{ where, step string }
	times := map[key][]time.Duration{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l hopLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue // not JSON: a panic's trace, a line from another tool
		}
		switch l.Msg {
		case "event handled":
			where := cmp.Or(l.Service, l.Group) + " reads " + l.Topic
			times[key{where, "1 waited"}] = append(times[key{where, "1 waited"}], l.Waited)
			times[key{where, "2 handled"}] = append(times[key{where, "2 handled"}], l.Took)
		case "outbox published":
			where := l.Outbox + " relay"
			if l.Lane == "fast" { // published from memory: no take
				where = l.Outbox + " fast lane"
			} else {
				times[key{where, "1 take"}] = append(times[key{where, "1 take"}], l.Take)
			}
			times[key{where, "2 publish"}] = append(times[key{where, "2 publish"}], l.Publish)
			times[key{where, "3 commit"}] = append(times[key{where, "3 commit"}], l.Commit)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hops: read the log: %w", err)
	}
	keys := make([]key, 0, len(times))
	for k := range times {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.where, b.where), cmp.Compare(a.step, b.step)) })
	steps := make([]hopStep, len(keys))
	for i, k := range keys {
		steps[i] = hopStep{Where: k.where, Step: k.step[2:], Times: percentilesOf(times[k])}
	}
	return steps, nil
}
