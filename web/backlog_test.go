package web

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestBacklogRefusesWhileManyBookingsAreOverdue: presses are taken while the bookings in
// progress are young, however many; refused once more than shedMaxLate are overdue; taken again
// once they are answered. A few overdue bookings (one slow card) never close the door.
func TestBacklogRefusesWhileManyBookingsAreOverdue(t *testing.T) {
	now := time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC)
	b := newBacklog(10*time.Second, func() time.Time { return now })

	// A hot show: thousands taken within a second, none late.
	for i := range 5000 {
		b.taken(fmt.Sprint("hot-", i))
	}
	now = now.Add(5 * time.Second)
	if err := b.admit(); err != nil {
		t.Fatalf("5,000 bookings 5 s old: %v, want the press taken", err)
	}
	for i := range 5000 {
		b.ended(fmt.Sprint("hot-", i))
	}

	// A few stuck on a slow provider: still open.
	for i := range shedMaxLate {
		b.taken(fmt.Sprint("slow-", i))
	}
	now = now.Add(11 * time.Second)
	if err := b.admit(); err != nil {
		t.Fatalf("%d bookings overdue: %v, want the press taken", shedMaxLate, err)
	}

	// One more overdue is an overload: refused, without recording anything.
	b.taken("one-more")
	now = now.Add(11 * time.Second)
	if err := b.admit(); !errors.Is(err, errBusy) {
		t.Fatalf("%d bookings overdue: %v, want errBusy", shedMaxLate+1, err)
	}
	// The count is kept for a moment: an outcome does not reopen the door before the recount.
	b.ended("one-more")
	if err := b.admit(); !errors.Is(err, errBusy) {
		t.Fatalf("before the recount: %v, want errBusy still", err)
	}
	for i := range shedMaxLate {
		b.ended(fmt.Sprint("slow-", i))
	}
	now = now.Add(backlogRecount)
	if err := b.admit(); err != nil {
		t.Fatalf("after the overdue ones were answered: %v, want the press taken", err)
	}

	// A booking whose end this replica never hears stops counting.
	for i := range 2 * shedMaxLate {
		b.taken(fmt.Sprint("lost-", i))
	}
	now = now.Add(backlogForget + time.Second)
	if err := b.admit(); err != nil {
		t.Fatalf("bookings older than %s: %v, want them forgotten", backlogForget, err)
	}
	if n := b.inProgress(); n != 0 {
		t.Errorf("%d bookings still followed after %s, want none", n, backlogForget)
	}

	off := newBacklog(0, func() time.Time { return now })
	for i := range 1000 {
		off.taken(fmt.Sprint("x-", i))
	}
	now = now.Add(time.Minute)
	if err := off.admit(); err != nil || off.inProgress() != 0 {
		t.Errorf("shedding off: %v with %d followed, want every press taken and nothing followed", err, off.inProgress())
	}
}

// TestBacklogCapsWhatItTakesAfterAnOverload: once late bookings have tripped it, the backlog
// takes no more bookings in progress than it saw finish in the last lateAfter (so each is
// answered in about that time), and lifts the cap lateAfter after its last refusal: a burst
// later is taken whole again.
func TestBacklogCapsWhatItTakesAfterAnOverload(t *testing.T) {
	now := time.Date(2026, 12, 3, 20, 0, 0, 0, time.UTC)
	b := newBacklog(10*time.Second, func() time.Time { return now })
	for i := range 200 {
		b.taken(fmt.Sprint("first-", i))
	}
	now = now.Add(11 * time.Second)
	if err := b.admit(); !errors.Is(err, errBusy) {
		t.Fatalf("200 overdue: %v, want errBusy", err)
	}
	for i := range 150 {
		b.ended(fmt.Sprint("first-", i))
	}
	now = now.Add(backlogRecount)
	taken := 0
	for i := range 1000 {
		if b.admit() != nil {
			break
		}
		b.taken(fmt.Sprint("then-", i))
		taken++
	}
	// 50 overdue left, 150 finished in the last 10 s: 100 more, then the cap.
	if taken != 100 {
		t.Fatalf("after an overload, with 150 finished in the last 10 s and 50 in progress: took %d, want 100", taken)
	}
	// Presses not taken after all (a failed statement, a replayed key) are no bookings finished:
	// they do not loosen the cap.
	for i := range 50 {
		b.taken(fmt.Sprint("failed-", i))
		b.dropped(fmt.Sprint("failed-", i))
	}
	now = now.Add(backlogRecount)
	if err := b.admit(); !errors.Is(err, errBusy) {
		t.Fatalf("150 in progress, 150 finished and 50 dropped in the last 10 s: %v, want errBusy", err)
	}
	for i := range 150 {
		b.ended(fmt.Sprint("first-", i%50+150))
		b.ended(fmt.Sprint("then-", i%100))
	}
	// All finished; the cap holds until 10 s after the last refusal, and then a burst is taken whole.
	now = now.Add(9 * time.Second)
	if err := b.admit(); err != nil {
		t.Fatalf("nothing in progress, 300 finished lately: %v, want the press taken", err)
	}
	now = now.Add(11 * time.Second)
	for i := range 500 {
		if err := b.admit(); err != nil {
			t.Fatalf("press %d of a burst 20 s after the last refusal: %v, want the cap lifted", i, err)
		}
		b.taken(fmt.Sprint("burst-", i))
	}
}
