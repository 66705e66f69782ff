package main

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

const cardSlow = "4000 0000 0000 3063" // the sandbox approves it after gateway.SlowCardDelay

// inboxTexts lists the texts the sandbox phone received.
func (c *cluster) inboxTexts() []string {
	c.t.Helper()
	var inbox struct{ Messages []struct{ Body string } }
	c.staffJSON("/api/dev/sms?phone="+url.QueryEscape(normalizedPhone), &inbox)
	var bodies []string
	for _, m := range inbox.Messages {
		bodies = append(bodies, m.Body)
	}
	return bodies
}

// TestUnpaidHoldEndsByItself: with the payment service down, a confirmed booking's hold runs
// out. The seats stay held until payment can say no money moved; then the booking fails with the
// reason, the seats are free again and nobody was charged.
func TestUnpaidHoldEndsByItself(t *testing.T) {
	c := newCluster(t)
	hold := map[string]string{"HOLD_DURATION": "1s"}
	c.startWith(TargetWeb, hold)
	c.startWith(TargetBooking, hold)
	c.start(TargetNotification)
	c.start(TargetTicket)
	show := c.futureShow()
	resp := c.mustBook(show.ID, []string{"G1", "G2"}, cardApproves)

	var st apiStatus
	eventually(t, "the booking confirmed", func() bool { c.getJSON(resp.StatusURL, &st); return st.Status == "confirmed" })
	eventually(t, "the expiry announced", func() bool {
		var announced bool
		_ = c.db().Get(&announced, `SELECT expiry_requested_at IS NOT NULL FROM booking.bookings WHERE id = $1`, resp.BookingID)
		return announced
	})
	if states := c.seatStates(show.ID); states["G1"] != "taken" || states["G2"] != "taken" {
		t.Errorf("before payment answered G1=%s G2=%s, want both still taken", states["G1"], states["G2"])
	}

	c.start(TargetPayment)
	st = c.waitFinal(resp.BookingID)
	if st.Status != "failed" || !strings.Contains(st.Reason, "did not complete while your seats were held") {
		t.Fatalf("booking %q (%q), want failed because the hold ran out", st.Status, st.Reason)
	}
	if failed := st.Stages[2]; failed.Name != "failed" || !strings.Contains(failed.Detail, "You were not charged") {
		t.Errorf("stages %+v, want the third to say the booking failed and nobody was charged", st.Stages)
	}
	if states := c.seatStates(show.ID); states["G1"] != "free" || states["G2"] != "free" {
		t.Errorf("after the hold ended G1=%s G2=%s, want both free", states["G1"], states["G2"])
	}
	var charges int
	if err := c.db().Get(&charges, `SELECT count(*) FROM payment_sandbox.charges WHERE idempotency_key = $1`, resp.BookingID); err != nil || charges != 0 {
		t.Errorf("%d charges (err %v) for a booking whose hold ran out before payment, want 0", charges, err)
	}
	eventually(t, "a text saying the seats were released, uncharged", func() bool {
		for _, body := range c.inboxTexts() {
			if strings.Contains(body, "did not go through") && strings.Contains(body, "You were not charged") {
				return true
			}
		}
		return false
	})
}

// TestLatePaymentIsRefundedEndToEnd: the processor approves after the hold ran out. The charge is
// refunded through the gateway, the booking fails saying so, the seats are free, the text says
// "refunded", and no ticket is issued.
func TestLatePaymentIsRefundedEndToEnd(t *testing.T) {
	c := newCluster(t)
	c.startWith(TargetAll, map[string]string{"HOLD_DURATION": "1s"})
	show := c.futureShow()
	resp := c.mustBook(show.ID, []string{"H1"}, cardSlow)

	events := readSSE(t, c.web.url+resp.EventsURL, "")
	names := eventNames(events)
	if len(names) < 4 || names[0] != "requested" || names[1] != "confirmed" || names[2] != "failed" || names[len(names)-1] != "close" {
		t.Fatalf("SSE events %v, want requested, confirmed, failed, …, close", names)
	}
	st := c.waitFinal(resp.BookingID)
	if st.Status != "failed" || !strings.Contains(st.Reason, "completed after the hold") || st.Ticket != nil {
		t.Fatalf("booking %q (%q) ticket %v, want failed as a late payment, without a ticket", st.Status, st.Reason, st.Ticket)
	}
	if !strings.Contains(events[2].Data, "refunded in full") {
		t.Errorf("failed stage %s, want it to say the payment was refunded", events[2].Data)
	}
	var ledger struct {
		Approved int `db:"approved"`
		Refunded int `db:"refunded"`
	}
	if err := c.db().Get(&ledger, `SELECT
		(SELECT count(*) FROM payment_sandbox.charges WHERE idempotency_key = $1 AND approved) AS approved,
		(SELECT count(*) FROM payment_sandbox.refunds r JOIN payment_sandbox.charges ch ON ch.reference = r.charge_reference
			WHERE ch.idempotency_key = $1) AS refunded`, resp.BookingID); err != nil {
		t.Fatal(err)
	}
	if ledger.Approved != 1 || ledger.Refunded != 1 {
		t.Errorf("ledger: %d approved charges, %d refunds; want the late charge and its refund", ledger.Approved, ledger.Refunded)
	}
	if states := c.seatStates(show.ID); states["H1"] != "free" {
		t.Errorf("after the refund H1=%s, want free", states["H1"])
	}
	eventually(t, "a text saying the payment was refunded", func() bool {
		for _, body := range c.inboxTexts() {
			if strings.Contains(body, "refunded in full") {
				return true
			}
		}
		return false
	})
	// Nothing more happens to it: the sweeper's expiry, read after the refund, changes nothing.
	time.Sleep(1500 * time.Millisecond)
	var outcomes int
	if err := c.db().Get(&outcomes, `SELECT count(*) FROM payment.payments WHERE booking_id = $1 AND status = 'refunded'`, resp.BookingID); err != nil || outcomes != 1 {
		t.Errorf("payments row: %d refunded (err %v), want 1", outcomes, err)
	}
	var tickets int
	if err := c.db().Get(&tickets, `SELECT count(*) FROM ticket.tickets WHERE booking_id = $1`, resp.BookingID); err != nil || tickets != 0 {
		t.Errorf("%d tickets (err %v) for a refunded booking, want 0", tickets, err)
	}
}
