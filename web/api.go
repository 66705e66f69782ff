package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
)

// maxJSONBytes bounds a booking request body.
const maxJSONBytes = 16 << 10

func (s *Server) apiMovies(w http.ResponseWriter, r *http.Request) {
	movies, err := s.catalog.Movies(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"movies": movies})
}

type apiShow struct {
	catalog.Show
	TheatreLocation string `json:"theatre_location"`
	SeatsLeft       int    `json:"seats_left"`
	SeatsURL        string `json:"seats_url"`
}

// apiShows lists a movie's shows from now to the end of the schedule.
func (s *Server) apiShows(w http.ResponseWriter, r *http.Request) {
	movieID := r.URL.Query().Get("movie_id")
	if movieID == "" {
		s.fail(w, r, &ValidationError{Fields: map[string]string{"movie_id": "Give a movie_id, from GET /api/movies."}})
		return
	}
	if _, err := s.catalog.Movie(r.Context(), movieID); err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.deps.Now()
	shows, err := s.catalog.UpcomingShows(r.Context(), movieID, now, now.AddDate(0, 0, catalog.ScheduleDays+1))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	left, err := s.seatsLeft(r.Context(), shows)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]apiShow, 0, len(shows))
	for _, sh := range shows {
		out = append(out, apiShow{Show: sh, TheatreLocation: sh.TheatreLocation(), SeatsLeft: left[sh.ID],
			SeatsURL: "/api/shows/" + sh.ID + "/seats"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"shows": out})
}

type apiSeat struct {
	Label  string `json:"label"`
	Row    string `json:"row"`
	Number int    `json:"number"`
	State  string `json:"state"` // "free" or "taken"
	// Status tells a taken seat's kind: "held" while its booking is being paid for, "sold"
	// once ticketed; "free" otherwise.
	Status SeatState `json:"status"`
}

func (s *Server) apiSeats(w http.ResponseWriter, r *http.Request) {
	show, err := s.catalog.Show(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	seats, err := s.catalog.Seats(r.Context(), show.ScreenID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	seatMap, err := s.projection.ShowSeats(r.Context(), show.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]apiSeat, 0, len(seats))
	for _, seat := range seats {
		status, state := seatMap.State(seat.Label), "taken"
		if status == SeatFree {
			state = "free"
		}
		out = append(out, apiSeat{Label: seat.Label, Row: seat.Row, Number: seat.Number, State: state, Status: status})
	}
	writeJSON(w, http.StatusOK, map[string]any{"show_id": show.ID, "screen_number": show.ScreenNumber, "seats": out})
}

// apiCreateBooking accepts a booking request and answers 202 at once: the booking's progress
// is then read from status_url or followed on events_url.
func (s *Server) apiCreateBooking(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		s.fail(w, r, &badRequestError{"Send the booking as JSON (Content-Type: application/json)."})
		return
	}
	req, err := decodeBookingRequest(http.MaxBytesReader(w, r.Body, maxJSONBytes))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, replayed, err := s.intake.Submit(r.Context(), s.clientOf(r), req, r.Header.Get("Idempotency-Key"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	// The URLs carry the booking's token: whoever holds them can follow the booking, nobody else.
	statusURL := s.withToken("/api/bookings/"+id, id)
	w.Header().Set("Location", statusURL)
	writeJSON(w, http.StatusAccepted, map[string]string{
		"booking_id": id,
		"status_url": statusURL,
		"events_url": s.withToken("/api/bookings/"+id+"/events", id),
		"page_url":   s.withToken("/bookings/"+id, id),
	})
}

// decodeBookingRequest reads one JSON booking request; every failure is a *badRequestError that
// says what is wrong in terms of the request's fields.
func decodeBookingRequest(body io.Reader) (BookingRequest, error) {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var req BookingRequest
	if err := dec.Decode(&req); err != nil {
		return BookingRequest{}, bodyReadFailed(err, &badRequestError{jsonProblem(err)})
	}
	if dec.More() {
		return BookingRequest{}, &badRequestError{"The body must hold one JSON object."}
	}
	return req, nil
}

// jsonProblem explains a JSON decoding error in terms of the request's fields.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return "The body is empty: send a JSON object with show_id, seats, name, phone and card_number."
	case errors.As(err, &syntax):
		return fmt.Sprintf("The body is not valid JSON (at byte %d).", syntax.Offset)
	case errors.As(err, &typeErr):
		return fmt.Sprintf("Field %s must be %s.", typeErr.Field, typeName(typeErr.Field))
	case errors.As(err, &tooBig):
		return fmt.Sprintf("The body is larger than %d bytes.", tooBig.Limit)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "Unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + "."
	}
	return "The body could not be read as a booking request."
}

func typeName(field string) string {
	if field == "seats" {
		return "a list of seat labels, like [\"F7\",\"F8\"]"
	}
	return "a string"
}

type apiStage struct {
	Name   string    `json:"name"`
	At     time.Time `json:"at"`
	Detail string    `json:"detail"`
	Status string    `json:"status,omitempty"`
}

type apiStatus struct {
	BookingID string              `json:"booking_id"`
	Status    string              `json:"status"`
	Reason    string              `json:"reason,omitempty"`
	ShowID    string              `json:"show_id"`
	Seats     []string            `json:"seats"`
	Stages    []apiStage          `json:"stages"`
	Ticket    *event.TicketIssued `json:"ticket"`
	// TicketCode is what the ticket's QR code encodes, for /tickets/verify at the door.
	TicketCode string `json:"ticket_code,omitempty"`
	// HoldExpiresAt is when the seats' hold runs out, while the booking waits for payment.
	HoldExpiresAt *time.Time `json:"hold_expires_at,omitempty"`
}

func apiBookingStatus(b BookingStatus) apiStatus {
	out := apiStatus{BookingID: b.ID, Status: b.Status, Reason: b.Reason, ShowID: b.ShowID, Seats: b.Seats,
		Stages: make([]apiStage, 0, len(b.Stages)), Ticket: b.Ticket, TicketCode: b.TicketCode}
	for _, st := range b.Stages {
		out.Stages = append(out.Stages, apiStage{Name: st.Name, At: st.At, Detail: st.Detail})
	}
	if b.Status == StatusConfirmed {
		out.HoldExpiresAt = b.HoldUntil
	}
	return out
}

func (s *Server) apiBooking(w http.ResponseWriter, r *http.Request) {
	id, err := s.bookingID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := s.loadBooking(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, apiBookingStatus(b))
}

func (s *Server) apiTicket(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, errNotFound)
		return
	}
	t, bookingID, err := s.projection.Ticket(r.Context(), id.String())
	if err == nil && !s.tokenMatches(r, bookingID) {
		err = errNotFound // the ticket is its booking's business too
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"booking_id": bookingID, "ticket": t})
}
