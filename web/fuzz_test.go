package web

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzBookingRequestJSON: whatever body a client sends, decoding never panics and either gives
// a request or a bad-request error with a message for people; and normalising a decoded request
// either names the bad fields or yields a booking the services can trust.
func FuzzBookingRequestJSON(f *testing.F) {
	for _, seed := range []string{
		`{"show_id":"ldn-1-20261127-1930","seats":["F7","F8"],"name":"Ada","phone":"+44 7700 900123","card_number":"4242 4242 4242 4242"}`,
		`{"show_id":1}`, `{"seats":"A1"}`, `{}`, `[]`, `{"show_id":"x"}{"show_id":"y"}`, `{"extra":true}`, `{"name":"\u0000"}`,
		`{"seats":["a1","A1"]}`, `{"seats":["Z99","A0","AA1"," b2 "]}`, "\xff\xfe", `{"phone":"++++"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeBookingRequest(bytes.NewReader(body))
		if err != nil {
			var bad *badRequestError
			if !errors.As(err, &bad) || bad.msg == "" {
				t.Fatalf("decode error %v: want a bad request with a message", err)
			}
			return
		}
		checkNormalized(t, req)
	})
}

// FuzzBookingForm: whatever the seat-map form posts, reading it never panics, and normalising
// it either names the bad fields or yields a booking the services can trust.
func FuzzBookingForm(f *testing.F) {
	for _, seed := range []string{
		"show_id=ldn-1-20261127-1930&seats=F7&seats=F8&name=Ada&phone=%2B44+7700+900123&card_number=4242+4242+4242+4242",
		"seats=F7&seats=F7&seats=f8", "seats=" + strings.Repeat("A1%2C", 50), "name=%00&phone=%2B%2B", "%zz=1&seats", ";;&&==",
		"show_id=x&seats=Z99&seats=A0&name=" + strings.Repeat("n", 200),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/bookings", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if err := r.ParseForm(); err != nil {
			return // the handler answers 400 "The form could not be read"
		}
		checkNormalized(t, formBookingRequest(r.PostForm))
	})
}

var (
	seatPattern  = regexp.MustCompile(`^[A-Z][1-9][0-9]?$`)
	phonePattern = regexp.MustCompile(`^\+?[0-9]{7,15}$`) // an optional + and the digits: what the SMS provider gets
)

// checkNormalized: a request is either refused with a message per bad field, or accepted with
// seats, name and phone the services can trust.
func checkNormalized(t *testing.T, req BookingRequest) {
	t.Helper()
	out, problems := normalize(req)
	for field, msg := range problems {
		if msg == "" || !utf8.ValidString(msg) {
			t.Fatalf("field %s: message %q", field, msg)
		}
	}
	if len(problems) > 0 {
		return
	}
	if len(out.Seats) < 1 || len(out.Seats) > MaxSeatsPerBooking {
		t.Fatalf("accepted %d seats", len(out.Seats))
	}
	for _, s := range out.Seats {
		if !seatPattern.MatchString(s) {
			t.Fatalf("accepted seat %q", s)
		}
	}
	if out.Name == "" || utf8.RuneCountInString(out.Name) > 100 || !phonePattern.MatchString(out.Phone) {
		t.Fatalf("accepted %+v", out)
	}
}

// FuzzBookingToken: only a booking's own token opens it; no token, a forged one or another
// booking's is refused, whatever the bytes, and checking never panics.
func FuzzBookingToken(f *testing.F) {
	f.Add("7f1c2a9e-1111-4222-8333-444455556666", "")
	f.Add("7f1c2a9e-1111-4222-8333-444455556666", "AAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("not-a-uuid", "%00%ff")
	s := &Server{capabilityKey: []byte("0123456789abcdef0123456789abcdef")}
	f.Fuzz(func(t *testing.T, bookingID, token string) {
		r := httptest.NewRequest("GET", "/api/bookings/x?token="+url.QueryEscape(token), nil)
		real := s.token(bookingID)
		if got := s.tokenMatches(r, bookingID); got != (token == real && token != "") {
			t.Fatalf("token %q for booking %q: matches=%v", token, bookingID, got)
		}
		if other := bookingID + "x"; s.tokenMatches(httptest.NewRequest("GET", "/?token="+url.QueryEscape(real), nil), other) && s.token(other) != real {
			t.Fatalf("booking %q's token opened booking %q", bookingID, other)
		}
	})
}

// FuzzTicketCode: whatever a scanner reads, checking it never panics, and only a code this key
// signed names a ticket.
func FuzzTicketCode(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Add(SignedTicketCode(key, "7f1c2a9e-1111-4222-8333-444455556666"))
	f.Add("BX1.7f1c2a9e-1111-4222-8333-444455556666.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("BX1..")
	f.Add("\x00BX1.\xff")
	f.Fuzz(func(t *testing.T, code string) {
		id, err := VerifyTicketCode(key, code)
		if err != nil {
			return
		}
		if SignedTicketCode(key, id) != strings.TrimSpace(code) {
			t.Fatalf("%q verified as ticket %s, whose code is %q", code, id, SignedTicketCode(key, id))
		}
	})
}
