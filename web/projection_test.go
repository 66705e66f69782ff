package web

import (
	"slices"
	"testing"
	"time"
)

func names(stages []Stage) []string {
	out := make([]string, len(stages))
	for i, s := range stages {
		out[i] = s.Name
	}
	return out
}

// TestOrderedStagesHoldsBackAStageReadEarly: topics are read independently, so "paid" can be
// stored before "confirmed". The stream must still show them in the order they happened.
func TestOrderedStagesHoldsBackAStageReadEarly(t *testing.T) {
	at := time.Now()
	for _, tc := range []struct {
		stored []string
		want   []string
	}{
		{[]string{"requested", "paid"}, []string{"requested"}},
		{[]string{"paid", "requested", "confirmed"}, []string{"requested", "confirmed", "paid"}},
		{[]string{"requested", "rejected"}, []string{"requested", "rejected"}},
		{[]string{"notified", "failed", "confirmed", "requested"}, []string{"requested", "confirmed", "failed", "notified"}},
		{[]string{"confirmed"}, []string{}},
	} {
		var stages []Stage
		for _, n := range tc.stored {
			stages = append(stages, Stage{Name: n, At: at})
		}
		if got := names(orderedStages(stages)); !slices.Equal(got, tc.want) {
			t.Errorf("stored %v: streamed %v, want %v", tc.stored, got, tc.want)
		}
	}
}

// TestProgressViewAsOfEachStage: each SSE update renders the page as of its stage, with the
// stages still to come shown as pending, and a failure with its reason and a way back.
func TestProgressViewAsOfEachStage(t *testing.T) {
	b := BookingStatus{ID: "b", ShowID: "ldn-1-20261127-1930", Status: StatusFailed, Reason: "Your card was declined.",
		Stages: []Stage{{Name: "requested"}, {Name: "confirmed"}, {Name: "failed"}}}
	first := progressView(b, 1)
	if first.Status != StatusRequested || first.Failed || len(first.Stages) != 5 || first.Stages[1].State != "pending" {
		t.Errorf("as of the first stage: %+v", first)
	}
	final := progressView(b, -1)
	if !final.Failed || !final.Final || final.Reason != b.Reason || final.RetryURL != "/shows/ldn-1-20261127-1930" || final.Stages[2].State != "failed" {
		t.Errorf("the end: %+v", final)
	}
}

// TestStatusAtAgreesWithTheProgressView: the JSON stream's status for each stage is the one the
// page shows for it.
func TestStatusAtAgreesWithTheProgressView(t *testing.T) {
	b := BookingStatus{ID: "b", Status: StatusTicketed}
	for _, name := range []string{StatusRequested, StatusConfirmed, StatusPaid, StatusNotified, StatusTicketed} {
		b.Stages = append(b.Stages, Stage{Name: name})
	}
	failed := BookingStatus{ID: "f", Status: StatusFailed, Stages: []Stage{{Name: StatusRequested}, {Name: StatusConfirmed}, {Name: StatusFailed}, {Name: StatusNotified}}}
	for _, booking := range []BookingStatus{b, failed} {
		for n := 0; n <= len(booking.Stages); n++ {
			if got, want := statusAt(booking, n), progressView(booking, n).Status; got != want {
				t.Errorf("%s after %d stages: statusAt %q, progressView %q", booking.ID, n, got, want)
			}
		}
	}
}
