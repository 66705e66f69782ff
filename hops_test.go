package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestHopsSummarizeWhereABookingsTimeWent: `boxoffice hops` over the debug log of a real booking
// names every consumer and relay on its path, with the waits and timings they logged — so a
// renamed log field cannot leave scripts/hops.sh printing nothing or zeros.
func TestHopsSummarizeWhereABookingsTimeWent(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	// Four bookings, so each step has two samples or more even if a drain (the relay's poll)
	// took an event or two from the fast lane.
	for _, seat := range []string{"A1", "A2", "A3", "A4"} {
		b := c.mustBook(show.ID, []string{seat}, cardApproves)
		if st := c.waitFinal(b.BookingID); st.Status != "ticketed" {
			t.Fatalf("booking %s ended %s, want ticketed", b.BookingID, st.Status)
		}
	}
	steps, err := summarizeHops(strings.NewReader(c.web.logs.String()))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]hopStep{}
	for _, s := range steps {
		got[s.Where+" "+s.Step] = s
	}
	for _, want := range []string{
		"web.outbox fast lane publish", "web.outbox fast lane commit",
		"booking reads booking-movie waited", "booking reads booking-movie handled", "booking.outbox fast lane publish",
		"payment reads movie-found waited", "payment reads movie-found handled", "payment.outbox fast lane publish",
		"notification reads payment-topic waited", "notification reads payment-topic handled", "notification.outbox fast lane publish",
		"ticket reads notification-sent waited", "ticket reads notification-sent handled", "ticket.outbox fast lane publish",
		"web reads ticket-details waited", "web reads ticket-details handled",
	} {
		s, ok := got[want]
		if !ok {
			t.Errorf("no %q in the summary; it has %v", want, steps)
			continue
		}
		// Each step takes some time, and none a minute: a duration read as the wrong unit or
		// from the wrong field would be zero or absurd.
		if s.Times.N < 2 || s.Times.P50 <= 0 || s.Times.Max > 60_000 {
			t.Errorf("%s: %d samples, p50 %.3f ms, max %.1f ms; want 2 or more, each above zero and under a minute", want, s.Times.N, s.Times.P50, s.Times.Max)
		}
	}
}

// TestHopsSkipWhatIsNotATiming: lines that are not JSON or are other messages are left out, and
// a log without timings is an error that says how to get them.
func TestHopsSkipWhatIsNotATiming(t *testing.T) {
	log := `goroutine 1 [running]:
{"msg":"boxoffice started","target":"all"}
{"msg":"event handled","service":"ticket","topic":"notification-sent","waited":2000000,"took":1000000}
{"msg":"event handled","service":"ticket","topic":"notification-sent","waited":4000000,"took":3000000}
`
	steps, err := summarizeHops(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || steps[0].Step != "waited" || steps[0].Times.N != 2 || steps[0].Times.Max != 4 ||
		steps[1].Step != "handled" || steps[1].Times.P50 != 1 {
		t.Errorf("summary %+v; want ticket's waited (2 samples, max 4 ms) then handled (p50 1 ms)", steps)
	}
	var out strings.Builder
	err = runHops(nil, strings.NewReader(`{"msg":"boxoffice started"}`), &out)
	if err == nil || !strings.Contains(err.Error(), "LOG_LEVEL=debug") {
		t.Errorf("a log without timings gave %v; want an error naming LOG_LEVEL=debug", err)
	}
}

// TestHopsTellTheFastLaneFromDrains: a relay's fast lane publishes without a take, so its lines
// are summarized apart from its drains', and give no take of zero.
func TestHopsTellTheFastLaneFromDrains(t *testing.T) {
	log := `{"msg":"outbox published","outbox":"web.outbox","messages":1,"take":300000,"publish":500000,"commit":400000}
{"msg":"outbox published","outbox":"web.outbox","messages":2,"lane":"fast","publish":600000,"commit":200000}
`
	steps, err := summarizeHops(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%s %s %.1f", s.Where, s.Step, s.Times.P50))
	}
	want := "[web.outbox fast lane publish 0.6 web.outbox fast lane commit 0.2 web.outbox relay take 0.3 web.outbox relay publish 0.5 web.outbox relay commit 0.4]"
	if fmt.Sprint(got) != want {
		t.Errorf("summary %v; want %s", got, want)
	}
}
