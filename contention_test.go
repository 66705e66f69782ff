package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestThousandsOfBuyersForFourSeats: 2,000 people press Book at once for the same four seats of
// one show. Exactly four bookings are ticketed, everyone else is told the seats are taken, and
// the database constraint never had to be the thing that stopped a double sale.
func TestThousandsOfBuyersForFourSeats(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	seats := [][]string{{"L13"}, {"L14"}, {"L15"}, {"L16"}, {"L13", "L14"}, {"L15", "L16"}, {"L14", "L15"}}
	const buyers = 2000

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 200, MaxIdleConnsPerHost: 200}, Timeout: time.Minute}
	ids := make(chan string, buyers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(request(show.ID, seats[i%len(seats)], cardApproves))
			resp, err := client.Post(c.web.url+"/api/bookings", "application/json", strings.NewReader(string(body)))
			if err != nil {
				t.Errorf("buyer %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			var out bookingResponse
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted {
				t.Errorf("buyer %d: %d %+v %v", i, resp.StatusCode, out, err)
				return
			}
			ids <- out.BookingID
		}()
	}
	wg.Wait()
	close(ids)
	accepted := time.Since(start)

	sold := map[string]string{}
	ticketed, taken := 0, 0
	for id := range ids {
		st := c.waitFinal(id)
		switch {
		case st.Status == "ticketed":
			ticketed++
			for _, seat := range st.Ticket.Seats {
				if other, dup := sold[seat]; dup {
					t.Errorf("seat %s sold to %s and %s", seat, other, id)
				}
				sold[seat] = id
			}
		case st.Status == "rejected" && strings.Contains(st.Reason, "already taken"):
			taken++
		default:
			t.Errorf("booking %s: %q %q", id, st.Status, st.Reason)
		}
	}
	t.Logf("%d requests accepted in %s; all decided in %s: %d ticketed, %d told the seats were taken",
		buyers, accepted.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), ticketed, taken)
	if len(sold) != 4 || ticketed+taken != buyers {
		t.Errorf("%d seats sold in %d tickets, %d rejected as taken; want all 4 seats sold and every other buyer told", len(sold), ticketed, taken)
	}
	if strings.Contains(c.web.logs.String(), "database constraint alone") {
		t.Error("the database constraint was the only thing that stopped a double sale")
	}
}
