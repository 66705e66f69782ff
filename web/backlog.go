package web

import (
	"errors"
	"sync"
	"time"
)

// errBusy refuses a Book press while too many of the bookings this replica took are overdue:
// the pipeline is behind, and taking more would only make everyone wait longer. Measured here
// (2026-12-03): offered 1,000 bookings a second for a minute, the web took 47,000, the machine
// works through about 450 a second, and all but 637 buyers gave up after 30 s without a ticket,
// the taking itself starving the pipeline. Refused at once, the rest can try again while the
// bookings already taken still get their answers.
var errBusy = errors.New("too many bookings in progress are overdue")

// busyMessage is what a refused buyer reads.
const busyMessage = "So many people are booking right now that we cannot take another booking this moment. Nothing was booked or charged: please try again in a few seconds."

// backlog follows the bookings this web replica took (Book presses it recorded) until the
// projection stores their outcome. Every replica reads every event, so each hears the end of the
// bookings it took. It sheds load by lateness rather than by count, so it needs no tuning to the
// machine: a hot show's ten thousand quick refusals are many bookings but none of them late,
// while an overload makes bookings late on any machine. One stuck booking does not close the
// door: it takes more than maxLate of them.
//
// Lateness shows only after lateAfter, by when an overload has taken lateAfter's worth of
// presses, more than the machine answers in time. So once late bookings have tripped it, the
// backlog also caps what it takes by Little's law: no more bookings in progress than it saw
// finish in the last lateAfter, so a booking taken then is answered within about lateAfter. The
// cap holds while it turns presses away, and lifts lateAfter after the last one it refused.
type backlog struct {
	lateAfter   time.Duration // a booking taken longer ago than this without an outcome is late; 0 turns shedding off
	maxLate     int           // more late bookings than this refuse new presses
	forgetAfter time.Duration // a booking whose end was never heard (a rebuilt projection) stops counting
	now         func() time.Time

	mu        sync.Mutex
	takenAt   map[string]time.Time // booking id → when it was taken
	late      int                  // at the last count
	countedAt time.Time
	// finished holds how many bookings finished in each recount period of the last lateAfter
	// (a ring; pos is the next slot), finishing the current one.
	finished  []int
	pos       int
	finishing int
	cappedTil time.Time // the Little's-law cap holds until then
}

const (
	// DefaultShedAfter is the answer time a buyer is promised (the hot show's target): bookings
	// still without an outcome after it are late.
	DefaultShedAfter = 10 * time.Second
	// shedMaxLate late bookings are an overload, not one booking stuck on a slow provider.
	shedMaxLate = 100
	// backlogRecount bounds how often the late ones are counted: a count walks every booking
	// in progress, and at a thousand presses a second counting for each would cost more than it
	// saves.
	backlogRecount = 250 * time.Millisecond
	backlogForget  = 2 * time.Minute
)

func newBacklog(lateAfter time.Duration, now func() time.Time) *backlog {
	if now == nil {
		now = time.Now
	}
	periods := max(int(lateAfter/backlogRecount), 1)
	return &backlog{lateAfter: lateAfter, maxLate: shedMaxLate, forgetAfter: backlogForget, now: now,
		takenAt: map[string]time.Time{}, finished: make([]int, periods)}
}

// admit says whether a new press may be taken now: errBusy while more than maxLate bookings are
// late, and after that while the bookings in progress are as many as finished in the last
// lateAfter.
func (b *backlog) admit() error {
	if b == nil || b.lateAfter <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if now.Sub(b.countedAt) >= backlogRecount {
		// The ring moves on by the periods gone by since the last count (presses may be rare):
		// what finished since then goes in the first, the others had none counted.
		for i := range min(int(now.Sub(b.countedAt)/backlogRecount), len(b.finished)) {
			n := 0
			if i == 0 {
				n = b.finishing
			}
			b.finished[b.pos], b.pos = n, (b.pos+1)%len(b.finished)
		}
		b.finishing = 0
		b.late, b.countedAt = 0, now
		for id, at := range b.takenAt {
			switch age := now.Sub(at); {
			case age > b.forgetAfter:
				delete(b.takenAt, id)
			case age > b.lateAfter:
				b.late++
			}
		}
	}
	if b.late > b.maxLate {
		b.cappedTil = now.Add(b.lateAfter)
		return errBusy
	}
	if now.Before(b.cappedTil) {
		finished := 0
		for _, n := range b.finished {
			finished += n
		}
		if len(b.takenAt) >= finished {
			b.cappedTil = now.Add(b.lateAfter)
			return errBusy
		}
	}
	return nil
}

// taken starts following a booking just recorded.
func (b *backlog) taken(id string) {
	if b == nil || b.lateAfter <= 0 {
		return
	}
	b.mu.Lock()
	b.takenAt[id] = b.now()
	b.mu.Unlock()
}

// ended stops following a booking: its outcome is stored (or it was never recorded).
func (b *backlog) ended(id string) {
	if b == nil || b.lateAfter <= 0 {
		return
	}
	b.mu.Lock()
	if _, ok := b.takenAt[id]; ok {
		delete(b.takenAt, id)
		b.finishing++
	}
	b.mu.Unlock()
}

// dropped stops following a press that was not taken after all (not stored, or its idempotency
// key's first booking answers it): unlike ended, it is no booking finished for the cap.
func (b *backlog) dropped(id string) {
	if b == nil || b.lateAfter <= 0 {
		return
	}
	b.mu.Lock()
	delete(b.takenAt, id)
	b.mu.Unlock()
}

// inProgress is how many bookings it follows, late or not.
func (b *backlog) inProgress() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.takenAt)
}
