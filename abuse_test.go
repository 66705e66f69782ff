package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/booking"
)

// TestOneBuyerCannotTakeAShow reproduces the attack of issue 22: one browser session sends
// bookings of 10 seats for one show at once, as if to hold the whole screen. With the default
// caps (SEATS_PER_BUYER, SEATS_PER_ADDRESS) the first is ticketed and the others end rejected,
// their status saying why; the same buyer's phone from another address, without the
// cookie, are refused too; and another buyer still books the seats the rejected requests
// wanted.
func TestOneBuyerCannotTakeAShow(t *testing.T) {
	c := newCluster(t)
	c.startWith(TargetAll, map[string]string{
		"SEATS_PER_BUYER":   strconv.Itoa(booking.DefaultSeatsPerBuyer),
		"SEATS_PER_ADDRESS": strconv.Itoa(booking.DefaultSeatsPerAddress),
		"TRUSTED_PROXIES":   "127.0.0.1/32", // so each client below has the address it forwards
	})
	show := c.futureShow()
	attacker := apiClient{session: "ZZZZZZZZZZZZZZZZZZZZZZ", forwarded: "198.51.100.66"}
	rows := []string{"A", "B", "C"}
	ids := make([]string, len(rows))
	var wg sync.WaitGroup
	for i, row := range rows {
		wg.Go(func() {
			status, resp, _ := c.bookAs(attacker, uuid.NewString(), request(show.ID, rowSeats(row, 10), cardApproves))
			if status != http.StatusAccepted {
				t.Errorf("booking row %s: %d %+v", row, status, resp)
			}
			ids[i] = resp.BookingID
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ticketed, refusedRow := 0, ""
	for i, id := range ids {
		switch st := c.waitFinal(id); {
		case st.Status == "ticketed":
			ticketed++
		case st.Status == "rejected" && strings.Contains(st.Reason, "One buyer can book at most 10 seats for one show"):
			refusedRow = rows[i]
		default:
			t.Errorf("row %s: %q %q, want ticketed or rejected over the seat limit", rows[i], st.Status, st.Reason)
		}
	}
	if ticketed != 1 || refusedRow == "" {
		t.Fatalf("%d of 3 bookings of 10 seats by one buyer ticketed, want 1 and the others rejected", ticketed)
	}
	// The booking service compared the buyer by keys, never by the values themselves.
	var kept []struct {
		Session string `db:"buyer_session"`
		Address string `db:"buyer_address"`
		Phone   string `db:"buyer_phone"`
		Card    string `db:"buyer_card"`
	}
	if err := c.db().Select(&kept, `SELECT buyer_session, buyer_address, buyer_phone, buyer_card FROM booking.bookings
		WHERE status <> 'rejected'`); err != nil || len(kept) != 1 {
		t.Fatalf("%d bookings holding seats (err %v), want 1", len(kept), err)
	}
	k := kept[0]
	// The sandbox's test cards are everyone's, so it names no card: the card's cap is a real
	// processor's (its fingerprint), tested in services/booking.
	if k.Session == "" || k.Address == "" || k.Phone == "" || k.Card != "" ||
		strings.Contains(k.Session, attacker.session) || strings.Contains(k.Address, "198.51") || strings.Contains(k.Phone, "900123") {
		t.Errorf("the booking service keeps the buyer as %+v, want three opaque keys and no card", k)
	}

	// The same phone, without the cookie, from another address.
	status, resp, _ := c.bookAs(apiClient{forwarded: "203.0.113.66"}, uuid.NewString(), request(show.ID, []string{"D1"}, cardApproves))
	if status != http.StatusAccepted {
		t.Fatalf("the same buyer from elsewhere: %d %+v", status, resp)
	}
	if st := c.waitFinal(resp.BookingID); st.Status != "rejected" || !strings.Contains(st.Reason, "already has 10") {
		t.Errorf("the same phone from another address: %q %q, want rejected over the seat limit", st.Status, st.Reason)
	}

	// Another buyer (session, phone, card), from the attacker's address too, books the seats a
	// rejected request wanted.
	other := request(show.ID, rowSeats(refusedRow, 4), "5555 5555 5555 4444")
	other["name"], other["phone"] = "Grace Hopper", "+44 7700 900456"
	status, resp, _ = c.bookAs(apiClient{session: "YYYYYYYYYYYYYYYYYYYYYY", forwarded: attacker.forwarded}, uuid.NewString(), other)
	if status != http.StatusAccepted {
		t.Fatalf("another buyer: %d %+v", status, resp)
	}
	if st := c.waitFinal(resp.BookingID); st.Status != "ticketed" {
		t.Errorf("another buyer on the same show: %q %q, want ticketed", st.Status, st.Reason)
	}
}

// rowSeats is the first n seats of a row.
func rowSeats(row string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", row, i+1)
	}
	return out
}
