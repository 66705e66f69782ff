package web

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestBacklogRefusesWhileManyBookingsAreOverdue: presses are taken while the bookings in
// progress are young, however many; refused once more than shedMaxLate are overdue; taken again
// as their outcomes arrive. A few overdue bookings (one slow card) never close the door.
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
	now = now.Add(backlogRecount)
	if err := b.admit(); err != nil {
		t.Fatalf("after an outcome brought it to %d overdue: %v, want the press taken", shedMaxLate, err)
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
