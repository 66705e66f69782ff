package event_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/event"
)

// BenchmarkEnvelopeRoundTrip: what every hop pays per event — wrap a payload, encode the
// envelope for the wire, decode and check it, decode the payload.
//
//	go test -run '^$' -bench . -benchmem ./services/event
func BenchmarkEnvelopeRoundTrip(b *testing.B) {
	confirmed := event.SeatsConfirmed{Booking: event.BookingDetails{ShowID: "ldn-1-20261127-1930", Seats: []string{"F7", "F8"},
		MovieTitle: "Orbital Decay", TheatreName: "Boxoffice Bankside", TheatreLocation: "21 Sumner Street, SE1 9JZ, London",
		ScreenNumber: 1, StartsAt: time.Now(), Timezone: "Europe/London", CustomerName: "Ada Lovelace", PhoneMasked: "•••••••••123",
		AmountCents: 2790, Currency: "GBP"}, HoldExpiresAt: time.Now()}
	bookingID := uuid.NewString()
	b.ReportAllocs()
	for b.Loop() {
		env, err := event.New(event.TypeSeatsConfirmed, bookingID, confirmed, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		wire, err := json.Marshal(env)
		if err != nil {
			b.Fatal(err)
		}
		got, err := event.Decode(wire)
		if err != nil {
			b.Fatal(err)
		}
		var back event.SeatsConfirmed
		if err := got.Decode(&back); err != nil {
			b.Fatal(err)
		}
	}
}
