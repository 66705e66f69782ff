package booking

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/services/event"
)

// One buyer must not be able to take a whole show: thirty requests of ten seats would hold a
// 300-seat screen. The booking service caps the seats a buyer holds of one show (confirmed or
// paid: the rows of held_seats) by each of its identities — browser session, phone number and
// card, and, more loosely, the address it books from. It decides one show's requests in
// order (booking-movie is keyed by show), so the count it reads is the count it adds to, and a
// rejection travels the outbox like any other; a check in the web would race its own replicas.
// (While a rebalance moves a show's partition, two members may decide its requests at once: a
// cap may then be passed by a request, where a seat is still never sold twice.)

// Default seat caps: a family of ten books in one go, and an address (a household, an office, a
// mobile carrier's shared address) holds two such bookings.
const (
	DefaultSeatsPerBuyer   = 10
	DefaultSeatsPerAddress = 20
)

// SeatLimits caps the seats one buyer may hold of one show at once. PerBuyer applies to each of
// the browser session, the phone number and the card; PerAddress to the client's address. Zero
// turns a cap off.
type SeatLimits struct {
	PerBuyer   int
	PerAddress int
}

// The kinds of a buyer's identities.
const (
	buyerSession = "session"
	buyerAddress = "address"
	buyerPhone   = "phone"
	buyerCard    = "card"
)

// capOf is the cap for one kind of identity; 0 is none.
func (l SeatLimits) capOf(kind string) int {
	if kind == buyerAddress {
		return l.PerAddress
	}
	return l.PerBuyer
}

// Buyer is what booking.bookings keeps of who holds a booking's seats: opaque keys (the web's
// event.Buyer and the card's fingerprint), compared by the seat caps; an empty one never is.
type Buyer struct {
	Session string `json:"buyer_session"`
	Address string `json:"buyer_address"`
	Phone   string `json:"buyer_phone"`
	Card    string `json:"buyer_card"`
}

// buyerOf reads a request's buyer.
func buyerOf(req event.BookingRequested) Buyer {
	return Buyer{Session: req.Buyer.Session, Address: req.Buyer.Address, Phone: req.Buyer.Phone, Card: req.Card.Fingerprint}
}

// BuyerKey is one identity of a buyer on one show.
type BuyerKey struct {
	ShowID string
	Kind   string // session, address, phone or card
	Key    string
}

// Holdings is how many seats of a show the bookings sharing each buyer key hold.
type Holdings map[BuyerKey]int

// keys lists the buyer's identities on a show that a cap applies to.
func (l SeatLimits) keys(showID string, b Buyer) []BuyerKey {
	var keys []BuyerKey
	for _, k := range []BuyerKey{{showID, buyerSession, b.Session}, {showID, buyerPhone, b.Phone},
		{showID, buyerCard, b.Card}, {showID, buyerAddress, b.Address}} {
		if k.Key != "" && l.capOf(k.Kind) > 0 {
			keys = append(keys, k)
		}
	}
	return keys
}

// over is the rejection of a request for seats that would take one of its buyer's keys past
// its cap, given what those keys hold; nil if every key stays within. Of several, it names the
// one with the fewest seats left, so the sentence says how many may still be asked for.
func (l SeatLimits) over(keys []BuyerKey, seats int, holding Holdings) *rejection {
	var worst *BuyerKey
	left := 0
	for i, k := range keys {
		cap := l.capOf(k.Kind)
		if holding[k]+seats <= cap {
			continue
		}
		if worst == nil || cap-holding[k] < left {
			worst, left = &keys[i], cap-holding[k]
		}
	}
	if worst == nil {
		return nil
	}
	r := seatLimit(worst.Kind, l.capOf(worst.Kind), holding[*worst])
	return &r
}

// seatLimit is the rejection of a request over a cap, in words for people.
func seatLimit(kind string, cap, held int) rejection {
	// Paid seats count for good, so the sentence does not suggest trying again later.
	rule, holder := fmt.Sprintf("One buyer can book at most %d seats for one show", cap), "this browser"
	switch kind {
	case buyerAddress:
		rule, holder = fmt.Sprintf("At most %d seats for one show can be booked from one network address", cap), "yours"
	case buyerPhone:
		holder = "this phone number"
	case buyerCard:
		holder = "this card"
	}
	var reason string
	switch {
	case held == 0:
		reason = fmt.Sprintf("%s: choose at most %d.", rule, cap)
	case held >= cap:
		reason = fmt.Sprintf("%s, and %s already has %d. For a larger group, ask at the box office.", rule, holder, held)
	default:
		reason = fmt.Sprintf("%s, and %s already has %d: choose at most %d more.", rule, holder, held, cap-held)
	}
	return rejection{event.RejectSeatLimit, reason}
}

// holdingsQuery counts, for each wanted buyer key ($n shows, $n+1 kinds, $n+2 keys), the seats
// of its show held by bookings with that key. Each show's held seats are read by its key and
// grouped by booking, and each such booking looked up by its id: a show's holders, not the
// table. It is a fragment of a statement ending in the CTE holding (show_id, kind, key, seats).
func holdingsQuery(n int) string {
	return fmt.Sprintf(`buyers AS (
		SELECT DISTINCT * FROM unnest($%d::text[], $%d::text[], $%d::text[]) AS w (show_id, kind, key)
	), holders AS (
		SELECT s.show_id, h.booking_id, h.seats FROM (SELECT DISTINCT show_id FROM buyers) AS s
		CROSS JOIN LATERAL (
			SELECT booking_id, count(*) AS seats FROM booking.held_seats h WHERE h.show_id = s.show_id GROUP BY booking_id
		) AS h
	), holding AS (
		SELECT w.show_id, w.kind, w.key, sum(holders.seats)::int AS seats
		FROM holders
		CROSS JOIN LATERAL (
			SELECT buyer_session, buyer_address, buyer_phone, buyer_card FROM booking.bookings b WHERE b.id = holders.booking_id
		) AS b
		JOIN buyers w ON w.show_id = holders.show_id AND w.key = CASE w.kind
			WHEN 'session' THEN b.buyer_session WHEN 'address' THEN b.buyer_address
			WHEN 'phone' THEN b.buyer_phone WHEN 'card' THEN b.buyer_card END
		GROUP BY w.show_id, w.kind, w.key
	)`, n, n+1, n+2)
}

// buyerColumns are BuyerKeys as the holdings query takes them.
func buyerColumns(keys []BuyerKey) (shows, kinds, values []string) {
	for _, k := range keys {
		shows, kinds, values = append(shows, k.ShowID), append(kinds, k.Kind), append(values, k.Key)
	}
	return shows, kinds, values
}

// holdingsOf reads what the bookings sharing each key hold (see holdingsQuery).
func holdingsOf(ctx context.Context, q sqlx.QueryerContext, keys []BuyerKey) (Holdings, error) {
	holding := Holdings{}
	if len(keys) == 0 {
		return holding, nil
	}
	var rows []struct {
		ShowID string `db:"show_id"`
		Kind   string `db:"kind"`
		Key    string `db:"key"`
		Seats  int    `db:"seats"`
	}
	shows, kinds, values := buyerColumns(keys)
	if err := sqlx.SelectContext(ctx, q, &rows, `WITH `+holdingsQuery(1)+` SELECT show_id, kind, key, seats FROM holding`,
		pq.Array(shows), pq.Array(kinds), pq.Array(values)); err != nil {
		return nil, fmt.Errorf("count the seats the buyer holds: %w", err)
	}
	for _, r := range rows {
		holding[BuyerKey{r.ShowID, r.Kind, r.Key}] = r.Seats
	}
	return holding, nil
}

// overCap is a request that would take its buyer past a seat cap: Hold records nothing and
// the service rejects it instead.
type overCap struct{ rejection }

func (o *overCap) Error() string { return o.reason }
