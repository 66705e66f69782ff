// Package event is the contract between Boxoffice's services: the topic names, the envelope every
// message travels in and one payload struct per event type. Services import this package and the
// Kafka plumbing, never each other.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // theatres name their time zone; don't depend on the host's zoneinfo

	"github.com/google/uuid"
)

// The five topics of the booking flow, in the order a booking travels through them.
const (
	TopicBookingMovie     = "booking-movie"     // web → booking: a person asked for seats
	TopicMovieFound       = "movie-found"       // booking → payment: seats confirmed or booking rejected
	TopicPayment          = "payment-topic"     // payment → notification: charged or not
	TopicNotificationSent = "notification-sent" // notification → ticket: SMS delivered or failed
	TopicTicketDetails    = "ticket-details"    // ticket → web: the issued ticket
)

// Topics lists every topic the flow needs, so start-up can create them all.
var Topics = []string{TopicBookingMovie, TopicMovieFound, TopicPayment, TopicNotificationSent, TopicTicketDetails}

// Event types. Success and failure travel on the same topic, told apart by type.
const (
	TypeBookingRequested   = "booking.requested"       // on booking-movie
	TypeSeatsConfirmed     = "booking.seats_confirmed" // on movie-found
	TypeBookingRejected    = "booking.rejected"        // on movie-found
	TypeHoldExpired        = "booking.hold_expired"    // on movie-found: the seats' hold ran out unpaid
	TypePaymentSucceeded   = "payment.succeeded"       // on payment-topic
	TypePaymentFailed      = "payment.failed"          // on payment-topic
	TypeNotificationSent   = "notification.delivered"  // on notification-sent
	TypeNotificationFailed = "notification.failed"     // on notification-sent
	TypeTicketIssued       = "ticket.issued"           // on ticket-details
)

// Known reports whether a type is part of the contract. A consumer skips known types it does
// not handle (a topic carries several); an unknown one is a message no consumer can trust.
func Known(eventType string) bool {
	switch eventType {
	case TypeBookingRequested, TypeSeatsConfirmed, TypeBookingRejected, TypeHoldExpired, TypePaymentSucceeded,
		TypePaymentFailed, TypeNotificationSent, TypeNotificationFailed, TypeTicketIssued:
		return true
	}
	return false
}

// CurrentSchemaVersion is the envelope version this code writes and reads.
const CurrentSchemaVersion = 1

// Kafka header names, so a consumer can route or trace a message without decoding it.
const (
	HeaderType        = "event-type"
	HeaderTraceparent = "traceparent"
	// HeaderSentAt is when the publisher sent the message, in Unix nanoseconds: what a consumer
	// times its wait from (a Kafka timestamp has whole milliseconds, as much as the wait itself).
	HeaderSentAt = "sent-at"
)

const maxReasonLength = 500

// Envelope wraps every payload with what any consumer needs to route, deduplicate and trace it.
type Envelope struct {
	ID            string          `json:"event_id"`
	Type          string          `json:"type"`
	BookingID     string          `json:"booking_id"`
	OccurredAt    time.Time       `json:"occurred_at"`
	SchemaVersion int             `json:"schema_version"`
	Traceparent   string          `json:"traceparent,omitempty"`
	Payload       json.RawMessage `json:"payload"`
}

// New builds an envelope around payload with a fresh UUIDv7 id (time-ordered, so ids sort by
// creation in logs and tables).
func New(eventType, bookingID string, payload any, now time.Time) (Envelope, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Envelope{}, fmt.Errorf("new event id: %w", err)
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s payload: %w", eventType, err)
	}
	return Envelope{
		ID:            id.String(),
		Type:          eventType,
		BookingID:     bookingID,
		OccurredAt:    now.UTC(),
		SchemaVersion: CurrentSchemaVersion,
		Payload:       raw,
	}, nil
}

// ErrMalformed marks an event that can never be processed, however often it is retried.
var ErrMalformed = errors.New("malformed event")

// Decode parses a message value into an envelope and checks the fields every consumer relies on.
func Decode(value []byte) (Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return Envelope{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case env.ID == "":
		return Envelope{}, fmt.Errorf("%w: missing event_id", ErrMalformed)
	case env.Type == "":
		return Envelope{}, fmt.Errorf("%w: missing type", ErrMalformed)
	case env.BookingID == "":
		return Envelope{}, fmt.Errorf("%w: missing booking_id", ErrMalformed)
	case uuid.Validate(env.BookingID) != nil:
		return Envelope{}, fmt.Errorf("%w: booking_id %q is not a UUID", ErrMalformed, env.BookingID)
	case env.SchemaVersion != CurrentSchemaVersion:
		return Envelope{}, fmt.Errorf("%w: schema version %d not supported", ErrMalformed, env.SchemaVersion)
	}
	return env, nil
}

// Payload decodes the envelope's payload into out.
func (e Envelope) Decode(out any) error {
	if err := json.Unmarshal(e.Payload, out); err != nil {
		return fmt.Errorf("%w: %s payload: %v", ErrMalformed, e.Type, err)
	}
	return nil
}

// Card is what the web tier keeps of a card after tokenising it: never the full number.
type Card struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
	Token string `json:"token"`
	// Fingerprint names the card number the same way for every token of it, as processors'
	// card fingerprints do (a token is new each time), so the booking service can cap the
	// seats one card holds. Empty when the processor gives none.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Buyer names who asked for seats, for the booking service's seat caps: opaque keys the web
// derives from the browser session, the client's address and the phone number (MACs under a
// secret of its own), which the booking service only compares. An empty key is not compared.
type Buyer struct {
	Session string `json:"session,omitempty"`
	Address string `json:"address,omitempty"`
	Phone   string `json:"phone,omitempty"`
}

// BookingRequested is published by the web when a person presses Book.
type BookingRequested struct {
	ShowID       string    `json:"show_id"`
	Seats        []string  `json:"seats"`
	CustomerName string    `json:"customer_name"`
	Phone        string    `json:"phone"` // full number: only the notification service keeps it
	Card         Card      `json:"card"`
	RequestedAt  time.Time `json:"requested_at"`
	Buyer        Buyer     `json:"buyer,omitzero"` // absent in requests from before the seat caps
}

// BookingDetails is everything downstream stages need to charge, notify and print, copied
// forward from stage to stage so no service has to ask another.
type BookingDetails struct {
	ShowID          string    `json:"show_id"`
	MovieID         string    `json:"movie_id"`
	MovieTitle      string    `json:"movie_title"`
	TheatreName     string    `json:"theatre_name"`
	TheatreLocation string    `json:"theatre_location"`
	ScreenNumber    int       `json:"screen_number"`
	StartsAt        time.Time `json:"starts_at"`
	Timezone        string    `json:"timezone"` // the theatre's, for printing local times
	Seats           []string  `json:"seats"`
	AmountCents     int64     `json:"amount_cents"`
	Currency        string    `json:"currency"`
	CustomerName    string    `json:"customer_name"`
	PhoneMasked     string    `json:"phone_masked"`
}

// LocalStart is the show's start in its theatre's time zone.
func (b BookingDetails) LocalStart() time.Time { return InZone(b.StartsAt, b.Timezone) }

// InZone converts t to the named zone, or leaves it in UTC if the zone is unknown.
func InZone(t time.Time, zone string) time.Time {
	if loc := location(zone); loc != nil {
		return t.In(loc)
	}
	return t.UTC()
}

// zones caches time.LoadLocation, which reads and parses the zone's file on every call: several
// times a booking (its stages, its ticket, its pages), for the handful of zones theatres have.
// Only zones that exist are kept, so the cache is bounded by the zone database.
var zones sync.Map // name → *time.Location

func location(zone string) *time.Location {
	if loc, ok := zones.Load(zone); ok {
		return loc.(*time.Location)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil
	}
	zones.Store(zone, loc)
	return loc
}

// SeatsConfirmed says the booking service recorded the booking and holds its seats until
// HoldExpiresAt: a payment that completes later is refunded.
type SeatsConfirmed struct {
	Booking       BookingDetails `json:"booking"`
	Card          Card           `json:"card"`
	HoldExpiresAt time.Time      `json:"hold_expires_at"` // zero: no deadline (events from before holds ended)
}

// HoldExpired says a booking's hold ran out before the booking service heard of its payment. It
// asks the payment service, the only one that knows whether money moved, to close the payment:
// the seats are released when payment-topic answers (a success that was already recorded stands).
type HoldExpired struct {
	Booking       BookingDetails `json:"booking"`
	CardBrand     string         `json:"card_brand"`
	CardLast4     string         `json:"card_last4"`
	HoldExpiresAt time.Time      `json:"hold_expires_at"`
}

// BookingRejected says the booking could not be accepted, with a reason a person can read.
type BookingRejected struct {
	ShowID string   `json:"show_id"`
	Seats  []string `json:"seats"`
	Code   string   `json:"code"`
	Reason string   `json:"reason"`
}

// Rejection codes, stable for scripts; the Reason is for people.
const (
	RejectUnknownShow = "unknown_show"
	RejectShowStarted = "show_started"
	RejectUnknownSeat = "unknown_seat"
	RejectSeatTaken   = "seat_taken"
	RejectInvalid     = "invalid_request"
	RejectSeatLimit   = "seat_limit" // the buyer already holds as many seats of the show as one may
)

// PaymentSucceeded says the card was charged.
type PaymentSucceeded struct {
	Booking   BookingDetails `json:"booking"`
	PaymentID string         `json:"payment_id"`
	CardBrand string         `json:"card_brand"`
	CardLast4 string         `json:"card_last4"`
}

// PaymentFailed says the booking's payment did not stand, and why: the card was declined, the
// hold ran out before any charge, or a charge came too late and was refunded.
type PaymentFailed struct {
	Booking   BookingDetails `json:"booking"`
	Code      string         `json:"code"`
	Reason    string         `json:"reason"`
	CardBrand string         `json:"card_brand"`
	CardLast4 string         `json:"card_last4"`
	Refunded  bool           `json:"refunded,omitempty"` // the card was charged, then refunded in full
}

// Payment failure codes of Boxoffice's own, beside the processor's decline codes.
const (
	PaymentHoldExpired = "hold_expired" // the hold ran out before the card was charged
	PaymentLate        = "payment_late" // the charge completed after the hold ran out: refunded
)

// Consequence is the sentence that tells the customer where their money and seats stand.
func (p PaymentFailed) Consequence() string {
	if p.Refunded {
		return "Your payment was refunded in full and the seats were released."
	}
	return "You were not charged and the seats were released."
}

// NotificationResult says whether the SMS about a payment outcome went out. It carries the
// payment outcome forward so the ticket service knows whether to issue a ticket: a failed SMS
// never blocks a paid ticket.
type NotificationResult struct {
	Booking   BookingDetails `json:"booking"`
	Paid      bool           `json:"paid"`
	PaymentID string         `json:"payment_id,omitempty"`
	Kind      string         `json:"kind"` // "booking_confirmed" or "payment_failed"
	MessageID string         `json:"message_id,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// TicketIssued is the ticket, with every field the printed ticket shows.
type TicketIssued struct {
	TicketID        string    `json:"ticket_id"`
	Code            string    `json:"code"`
	ShowID          string    `json:"show_id"`
	MovieTitle      string    `json:"movie_title"`
	TheatreName     string    `json:"theatre_name"`
	TheatreLocation string    `json:"theatre_location"`
	StartsAt        time.Time `json:"starts_at"`
	Timezone        string    `json:"timezone"`
	ScreenNumber    int       `json:"screen_number"`
	Seats           []string  `json:"seats"`
	BookedUnder     string    `json:"booked_under"`
	AmountCents     int64     `json:"amount_cents"`
	Currency        string    `json:"currency"`
	IssuedAt        time.Time `json:"issued_at"`
}

// MaskPhone keeps the last three digits of a phone number: enough for a person to recognise
// it, too little to call it.
func MaskPhone(phone string) string {
	digits := make([]rune, 0, len(phone))
	for _, r := range phone {
		if r >= '0' && r <= '9' {
			digits = append(digits, r)
		}
	}
	if len(digits) <= 3 {
		return strings.Repeat("•", len(digits))
	}
	return strings.Repeat("•", len(digits)-3) + string(digits[len(digits)-3:])
}

// ShortReason trims a reason to a size that fits a header and a page.
func ShortReason(s string) string {
	if len(s) <= maxReasonLength {
		return s
	}
	return s[:maxReasonLength-1] + "…"
}
