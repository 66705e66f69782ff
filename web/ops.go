package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/boxoffice/boxoffice/services/ops"
	"github.com/boxoffice/boxoffice/templates"
)

// opsRefresh is how often /ops/events sends a fresh view.
const opsRefresh = 2 * time.Second

func opsView(snap ops.Snapshot) templates.OpsPage {
	p := templates.OpsPage{AsOf: event15(snap.At), Errors: snap.Errors}
	for _, g := range snap.Groups {
		og := templates.OpsGroup{Name: g.Name, Members: g.Members, Lag: g.Lag}
		for _, o := range g.Offsets {
			committed := fmt.Sprint(o.Committed)
			if o.Committed < 0 {
				committed = "–"
			}
			og.Partitions = append(og.Partitions, templates.OpsPartition{Topic: o.Topic, Partition: o.Partition, Committed: committed, End: o.End, Lag: o.Lag})
		}
		p.Groups = append(p.Groups, og)
	}
	for _, t := range snap.Topics {
		p.Topics = append(p.Topics, templates.OpsTopic{Name: t.Topic, Ends: t.Ends, Total: t.Total})
	}
	for _, t := range snap.DeadLetters {
		p.DeadLetters = append(p.DeadLetters, templates.OpsTopic{Name: t.Topic, Ends: t.Ends, Total: t.Total})
	}
	for _, o := range snap.Outboxes {
		oldest := "–"
		if o.Pending > 0 {
			oldest = o.Oldest.Round(time.Millisecond).String()
		}
		p.Outboxes = append(p.Outboxes, templates.OpsOutbox{Table: o.Table, Pending: o.Pending, Oldest: oldest})
	}
	return p
}

func event15(t time.Time) string { return t.UTC().Format("15:04:05 UTC") }

// opsPage renders the operations view as it is now.
func (s *Server) opsPage(w http.ResponseWriter, r *http.Request) {
	if s.snapshot == nil {
		s.fail(w, r, errNotFound)
		return
	}
	s.render(w, r, http.StatusOK, templates.OpsView(opsView(s.snapshot(r.Context()))))
}

// opsEvents streams a fresh operations view every opsRefresh, as an "ops" event the page swaps
// in, until the browser leaves or the server shuts down.
func (s *Server) opsEvents(w http.ResponseWriter, r *http.Request) {
	if s.snapshot == nil {
		s.fail(w, r, errNotFound)
		return
	}
	// The stream ends when the browser leaves or the server shuts down, whichever comes first.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.hub.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(opsRefresh)
	defer tick.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		snapCtx, cancelSnap := context.WithTimeout(ctx, opsRefresh*4)
		snap := s.snapshot(snapCtx)
		cancelSnap()
		buf.Reset()
		if err := templates.OpsFragment(opsView(snap)).Render(ctx, &buf); err != nil {
			return
		}
		var ev strings.Builder
		ev.WriteString("event: ops\n")
		for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
			ev.WriteString("data: " + line + "\n")
		}
		ev.WriteString("\n")
		// A browser that stops reading must not hold the handler (and shutdown) forever.
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write([]byte(ev.String())); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// apiOps is the operations view as JSON, for scripts.
func (s *Server) apiOps(w http.ResponseWriter, r *http.Request) {
	if s.snapshot == nil {
		s.fail(w, r, errNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s.snapshot(r.Context()))
}
