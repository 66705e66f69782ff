package event_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/event"
)

// FuzzDecode: whatever bytes arrive on a topic, decoding never panics; it either gives an
// envelope every consumer can rely on or says the message is malformed (so it is dead-lettered
// at once rather than retried), and a payload that does not fit its type is malformed too.
func FuzzDecode(f *testing.F) {
	good, _ := event.New(event.TypeSeatsConfirmed, uuid.NewString(), event.SeatsConfirmed{Booking: event.BookingDetails{Seats: []string{"A1"}}}, time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC))
	raw, _ := jsonOf(good)
	for _, seed := range [][]byte{raw, []byte(`{}`), []byte(`null`), []byte(`{"event_id":"x","type":"t","booking_id":"nope","schema_version":1}`),
		[]byte(`{"event_id":"x","type":"booking.rejected","booking_id":"7f1c2a9e-1111-4222-8333-444455556666","schema_version":1,"payload":[1]}`),
		[]byte("\xff"), []byte(`{"schema_version":2}`)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := event.Decode(data)
		if err != nil {
			if !errors.Is(err, event.ErrMalformed) {
				t.Fatalf("decode error %v is not ErrMalformed", err)
			}
			return
		}
		if env.ID == "" || env.Type == "" || uuid.Validate(env.BookingID) != nil || env.SchemaVersion != event.CurrentSchemaVersion {
			t.Fatalf("accepted %+v", env)
		}
		var payload event.BookingRejected
		if err := env.Decode(&payload); err != nil && !errors.Is(err, event.ErrMalformed) {
			t.Fatalf("payload error %v is not ErrMalformed", err)
		}
	})
}

func jsonOf(env event.Envelope) ([]byte, error) { return json.Marshal(env) }
