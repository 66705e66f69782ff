package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// MaxSeatsPerBooking bounds one booking, as box offices do.
const MaxSeatsPerBooking = 10

// BookingRequest is what a person (the form) or a script (the JSON API) asks for.
type BookingRequest struct {
	ShowID     string   `json:"show_id"`
	Seats      []string `json:"seats"`
	Name       string   `json:"name"`
	Phone      string   `json:"phone"`
	CardNumber string   `json:"card_number"`
}

// ValidationError lists what is wrong with a request, field by field, in words for people.
type ValidationError struct {
	Fields map[string]string
}

func (v *ValidationError) Error() string {
	keys := make([]string, 0, len(v.Fields))
	for k := range v.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+v.Fields[k])
	}
	return strings.Join(parts, "; ")
}

// First returns one field and its message, the first in the form's order.
func (v *ValidationError) First() (field, message string) {
	for _, f := range []string{"show_id", "seats", "name", "phone", "card_number"} {
		if m, ok := v.Fields[f]; ok {
			return f, m
		}
	}
	for f, m := range v.Fields {
		return f, m
	}
	return "", ""
}

// errUnavailable wraps failures of the broker or database that a retry later may fix.
var errUnavailable = errors.New("temporarily unavailable")

// Publisher is the part of the Kafka publisher the web needs.
type Publisher interface {
	Publish(ctx context.Context, msgs ...kafka.Message) error
}

// Intake turns a valid booking request into a booking-movie event. Malformed input never
// reaches Kafka: it is refused here with a message naming the field.
type Intake struct {
	projection *Projection
	tokenizer  gateway.Tokenizer
	secret     []byte // keys claimedKey and buyerKey: the web's capability key
	now        func() time.Time
}

var (
	showIDPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	seatLabelPattern = regexp.MustCompile(`^[A-Z][1-9][0-9]?$`)
)

// Submit validates req, tokenises the card, and records the booking as requested together with
// its booking-movie event in the web's outbox, from where the relay publishes it. It returns
// the new booking's id. A broker that is down delays the booking; it cannot lose it.
//
// With an idempotency key (the API's Idempotency-Key header, the form's hidden field), a request
// the same client sends again — a double click, a retry, a reload — returns the first booking's
// id with replayed set, and books nothing; the same key with a different request is a
// ValidationError. The key is the client's own: another client using it books anew.
//
// The event names the buyer (session, address, phone, card) by opaque keys, for the booking
// service's cap on the seats one buyer may hold on a show.
func (in *Intake) Submit(ctx context.Context, client Client, req BookingRequest, idempotencyKey string) (id string, replayed bool, err error) {
	clean, errs := normalize(req)
	var claim *RequestClaim
	if idempotencyKey != "" {
		if n := len(idempotencyKey); n < 8 || n > 200 {
			errs["idempotency_key"] = "An idempotency key has 8 to 200 characters; a random UUID is a good one."
		} else {
			claim = &RequestClaim{Key: in.claimedKey(client, idempotencyKey), Hash: requestHash(clean)}
		}
	}
	var card event.Card
	if _, bad := errs["card_number"]; !bad {
		var err error
		card, err = in.tokenizer.Tokenize(ctx, clean.CardNumber)
		var invalid *gateway.InvalidCardError
		switch {
		case errors.As(err, &invalid):
			errs["card_number"] = invalid.Reason
		case err != nil:
			return "", false, fmt.Errorf("tokenise card: %w: %w", errUnavailable, err)
		}
	}
	if len(errs) > 0 {
		return "", false, &ValidationError{Fields: errs}
	}

	bookingID := uuid.NewString() // version 4: 122 random bits, so one id says nothing of another
	payload := event.BookingRequested{
		ShowID:       clean.ShowID,
		Seats:        clean.Seats,
		CustomerName: clean.Name,
		Phone:        clean.Phone,
		Card:         card,
		RequestedAt:  in.now().UTC(),
		Buyer: event.Buyer{
			Session: in.buyerKey("session", client.Session),
			Address: in.buyerKey("address", client.Address),
			Phone:   in.buyerKey("phone", phoneIdentity(clean.Phone)),
		},
	}
	env, err := event.New(event.TypeBookingRequested, bookingID, payload, in.now())
	if err != nil {
		return "", false, err
	}
	env.Traceparent = kafka.NextSpan("") // every booking starts a trace
	first, err := in.projection.Record(ctx, env, payload, event.MaskPhone(clean.Phone), claim, true)
	switch {
	case errors.Is(err, errKeyReused):
		return "", false, &ValidationError{Fields: map[string]string{
			"idempotency_key": "This key was already used for a different booking request: use a new key for a new request."}}
	case err != nil:
		return "", false, fmt.Errorf("%w: %w", errUnavailable, err)
	case first != "":
		return first, true, nil
	}
	return bookingID, false, nil
}

// requestHash identifies a request for idempotency: the normalised fields, with the card
// reduced to its last four digits so no table holds anything derived from the full number.
func requestHash(r BookingRequest) string {
	last4 := r.CardNumber
	if len(last4) > 4 {
		last4 = last4[len(last4)-4:]
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{r.ShowID, strings.Join(r.Seats, ","), r.Name, r.Phone, last4}, "\x00")))
	return hex.EncodeToString(sum[:])
}

// normalize trims and checks every field, returning the cleaned request and one message per
// bad field.
func normalize(req BookingRequest) (BookingRequest, map[string]string) {
	errs := map[string]string{}
	out := BookingRequest{
		ShowID:     strings.TrimSpace(req.ShowID),
		Name:       strings.Join(strings.Fields(req.Name), " "),
		CardNumber: gateway.NormalizeCardNumber(strings.TrimSpace(req.CardNumber)),
	}

	switch {
	case out.ShowID == "":
		errs["show_id"] = "Choose a show."
	case !showIDPattern.MatchString(out.ShowID):
		errs["show_id"] = "That is not a show id."
	}

	for _, s := range req.Seats {
		s = strings.ToUpper(strings.TrimSpace(s))
		switch {
		case !seatLabelPattern.MatchString(s):
			errs["seats"] = fmt.Sprintf("%q is not a seat: seats are a row letter and a number, like F7.", truncate(s, 10))
		case slices.Contains(out.Seats, s):
			errs["seats"] = fmt.Sprintf("Seat %s is listed twice.", s)
		default:
			out.Seats = append(out.Seats, s)
		}
	}
	if _, bad := errs["seats"]; !bad {
		switch {
		case len(out.Seats) == 0:
			errs["seats"] = "Choose at least one seat."
		case len(out.Seats) > MaxSeatsPerBooking:
			errs["seats"] = fmt.Sprintf("Choose at most %d seats in one booking.", MaxSeatsPerBooking)
		}
	}

	switch {
	case out.Name == "":
		errs["name"] = "Enter the name to book under."
	case utf8.RuneCountInString(out.Name) > 100:
		errs["name"] = "Keep the name under 100 characters."
	case strings.IndexFunc(out.Name, unicode.IsControl) >= 0 || !utf8.ValidString(out.Name):
		errs["name"] = "The name has characters we cannot print."
	case hiddenCharacter(req.Name): // before Fields turns separators into spaces
		errs["name"] = "The name has invisible characters (direction overrides, zero-width spaces or line separators): type it as it should print."
	}

	phone, phoneErr := normalizePhone(req.Phone)
	if phoneErr != "" {
		errs["phone"] = phoneErr
	}
	out.Phone = phone

	if out.CardNumber == "" {
		errs["card_number"] = "Enter a card number."
	} else if err := gateway.ValidateCardNumber(out.CardNumber); err != nil {
		errs["card_number"] = err.Error()
	}
	return out, errs
}

// hiddenCharacter finds a format character (Unicode Cf: direction overrides and isolates,
// zero-width spaces, soft hyphens) or a line or paragraph separator, with which a name reads
// differently on the ticket than it was typed. The zero-width joiner and non-joiner are kept
// between two letters of the scripts that spell with them (Arabic, as Persian writes it, the
// Indic scripts, and emoji sequences), much as IDNA's contextual rules allow them.
func hiddenCharacter(name string) bool {
	runes := []rune(name)
	for i, r := range runes {
		if !unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			continue
		}
		if (r == '\u200c' || r == '\u200d') && i > 0 && i < len(runes)-1 && joins(runes[i-1]) && joins(runes[i+1]) {
			continue
		}
		return true
	}
	return false
}

// joiningScripts spell with the zero-width joiner and non-joiner.
var joiningScripts = []*unicode.RangeTable{
	unicode.Arabic, unicode.Syriac, unicode.Nko, unicode.Mongolian, unicode.Devanagari, unicode.Bengali,
	unicode.Gurmukhi, unicode.Gujarati, unicode.Oriya, unicode.Tamil, unicode.Telugu, unicode.Kannada,
	unicode.Malayalam, unicode.Sinhala, unicode.Myanmar, unicode.Khmer, unicode.Tibetan, unicode.So,
}

func joins(r rune) bool { return unicode.In(r, joiningScripts...) }

// normalizePhone accepts what people type (spaces, dashes, brackets, a leading +) and keeps
// a + and the digits.
func normalizePhone(raw string) (string, string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", "Enter a mobile number for the confirmation text."
	}
	var b strings.Builder
	for i, r := range raw {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return "", "A phone number has only digits, spaces and a leading +."
		}
	}
	digits := strings.TrimPrefix(b.String(), "+")
	if len(digits) < 7 || len(digits) > 15 {
		return "", "A phone number has 7 to 15 digits."
	}
	return b.String(), ""
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
