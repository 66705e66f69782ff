package web

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/templates"
)

// The cinema's door: /tickets/verify reads a scanned code and says whether it is a real ticket,
// for which show and seats, and whether it was already admitted; admitting it is recorded once,
// so the same ticket shown twice is caught the second time. No personal data is shown: the code
// is proof enough, and the door needs only the show and the seats. Who may admit: door.go.

// TicketCheck is what the door learns from a code.
type TicketCheck struct {
	Valid      bool       `json:"valid"`
	TicketID   string     `json:"ticket_id"`
	Code       string     `json:"code"` // the short code printed on the ticket
	ShowID     string     `json:"show_id"`
	Movie      string     `json:"movie"`
	Theatre    string     `json:"theatre"`
	Screen     int        `json:"screen_number"`
	StartsAt   time.Time  `json:"starts_at"`
	Seats      []string   `json:"seats"`
	Admitted   bool       `json:"admitted"`              // admitted before this request
	AdmittedAt *time.Time `json:"admitted_at,omitempty"` // when it was first admitted
	// AdmittedNow is set by an admission that was this ticket's first.
	AdmittedNow bool `json:"admitted_now,omitempty"`
	// ForToday: the show is today, in its cinema's time zone. A ticket for another day is
	// genuine, but the door should look twice.
	ForToday bool `json:"for_today"`
	timezone string
}

// errInvalidTicket is a code that is not one of ours, or names no ticket this web has issued.
var errInvalidTicket = errors.New("invalid ticket")

// errTicketNotYetKnown is a genuine code whose ticket this web replica has not read yet.
var errTicketNotYetKnown = errors.New("ticket not yet known here")

const notYetKnownMessage = "This code is genuine, but its ticket has not reached this server yet. Try again in a moment."

const invalidTicketMessage = "This is not a valid Boxoffice ticket: the code is damaged, mistyped or made up. Do not admit."

// checkTicket verifies a code and reads its ticket and admission.
func (s *Server) checkTicket(ctx context.Context, code string) (TicketCheck, error) {
	ticketID, err := VerifyTicketCode(s.capabilityKey, code)
	if err != nil {
		return TicketCheck{}, errInvalidTicket
	}
	t, _, err := s.projection.Ticket(ctx, ticketID)
	if errors.Is(err, ErrBookingNotFound) {
		// Only a ticket this web has shown is ever signed: its details are on their way here (a
		// replica catching up, a projection being rebuilt).
		return TicketCheck{}, errTicketNotYetKnown
	}
	if err != nil {
		return TicketCheck{}, err
	}
	check := ticketCheck(t)
	check.ForToday = sameDay(t.StartsAt, s.deps.Now(), t.Timezone)
	var at time.Time
	err = s.deps.DB.GetContext(ctx, &at, `SELECT admitted_at FROM web.admissions WHERE ticket_id = $1`, ticketID)
	switch {
	case err == nil:
		check.Admitted, check.AdmittedAt = true, &at
	case !errors.Is(err, sql.ErrNoRows):
		return TicketCheck{}, fmt.Errorf("read admission of %s: %w", ticketID, err)
	}
	return check, nil
}

// admitTicket records a ticket's admission, once: a second admission only reads the first.
func (s *Server) admitTicket(ctx context.Context, code string) (TicketCheck, error) {
	check, err := s.checkTicket(ctx, code)
	if err != nil || check.Admitted {
		return check, err
	}
	var at time.Time
	err = s.deps.DB.GetContext(ctx, &at, `INSERT INTO web.admissions (ticket_id, admitted_at) VALUES ($1, $2)
		ON CONFLICT (ticket_id) DO NOTHING RETURNING admitted_at`, check.TicketID, s.deps.Now())
	if errors.Is(err, sql.ErrNoRows) {
		return s.checkTicket(ctx, code) // another door admitted it a moment ago
	}
	if err != nil {
		return TicketCheck{}, fmt.Errorf("admit %s: %w", check.TicketID, err)
	}
	check.AdmittedNow, check.AdmittedAt = true, &at
	return check, nil
}

func ticketCheck(t event.TicketIssued) TicketCheck {
	return TicketCheck{
		Valid: true, TicketID: t.TicketID, Code: t.Code, ShowID: t.ShowID, Movie: t.MovieTitle,
		Theatre: t.TheatreName, Screen: t.ScreenNumber, StartsAt: t.StartsAt, Seats: t.Seats, timezone: t.Timezone,
	}
}

// verifyPage is the door's page: a code to check (?code=, as a scanner types it), and the answer.
func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request) {
	s.renderVerify(w, r, r.URL.Query().Get("code"), false)
}

// verifySubmit admits the ticket the door's page checked; only door staff may.
func (s *Server) verifySubmit(w http.ResponseWriter, r *http.Request) {
	staff, err := s.isDoorStaff(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !staff {
		page := templates.VerifyPage{Code: strings.TrimSpace(r.PostForm.Get("code")), Error: doorStaffOnlyMessage}
		s.render(w, r, http.StatusForbidden, templates.VerifyView(page))
		return
	}
	s.renderVerify(w, r, r.PostForm.Get("code"), true)
}

func (s *Server) renderVerify(w http.ResponseWriter, r *http.Request, code string, admit bool) {
	staff, err := s.isDoorStaff(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page := templates.VerifyPage{Code: strings.TrimSpace(code), DoorStaff: staff}
	status := http.StatusOK
	if page.Code != "" {
		read := s.checkTicket
		if admit {
			read = s.admitTicket
		}
		result, err := read(r.Context(), page.Code)
		switch {
		case errors.Is(err, errInvalidTicket):
			status, page.Error = http.StatusNotFound, invalidTicketMessage
		case errors.Is(err, errTicketNotYetKnown):
			status, page.Error = http.StatusServiceUnavailable, notYetKnownMessage
		case err != nil:
			s.fail(w, r, err)
			return
		default:
			page.Result = verifyView(result)
		}
	}
	s.render(w, r, status, templates.VerifyView(page))
}

func verifyView(c TicketCheck) *templates.VerifyResult {
	local := event.InZone(c.StartsAt, c.timezone)
	v := &templates.VerifyResult{
		Movie: c.Movie, Theatre: c.Theatre, Screen: fmt.Sprintf("Screen %d", c.Screen),
		When: local.Format("Monday 2 January 2006, 15:04"), Seats: joinSeats(c.Seats), Code: c.Code,
		AdmittedNow: c.AdmittedNow, AlreadyAdmitted: c.Admitted, AnotherDay: !c.ForToday,
	}
	if c.AdmittedAt != nil {
		v.AdmittedAt = event.InZone(*c.AdmittedAt, c.timezone).Format("15:04:05 on 2 January")
	}
	return v
}

// apiVerifyTicket answers GET /api/tickets/verify?code=…: 200 with the ticket, 404 if invalid.
func (s *Server) apiVerifyTicket(w http.ResponseWriter, r *http.Request) {
	s.answerTicket(w, r, r.URL.Query().Get("code"), false)
}

// apiAdmitTicket answers POST /api/tickets/admit {"code": …} from door staff (Authorization:
// Bearer <door key>): the first admission sets admitted_now; later ones answer admitted with the
// first one's time.
func (s *Server) apiAdmitTicket(w http.ResponseWriter, r *http.Request) {
	staff, limited := s.bearerIsDoorStaff(r)
	if limited != nil {
		s.fail(w, r, limited)
		return
	}
	if !staff {
		w.Header().Set("WWW-Authenticate", `Bearer realm="door"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "door_staff_only",
			"message": "Only door staff can admit tickets: send the door key as Authorization: Bearer <key>. Nothing was admitted."})
		return
	}
	var body struct {
		Code string `json:"code"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&body); err != nil {
		s.fail(w, r, bodyReadFailed(err, &badRequestError{`Send {"code": "…"}: the ticket code as scanned.`}))
		return
	}
	s.answerTicket(w, r, body.Code, true)
}

func (s *Server) answerTicket(w http.ResponseWriter, r *http.Request, code string, admit bool) {
	if strings.TrimSpace(code) == "" {
		s.fail(w, r, &badRequestError{"Give the ticket code as scanned from its QR code."})
		return
	}
	read := s.checkTicket
	if admit {
		read = s.admitTicket
	}
	check, err := read(r.Context(), code)
	if errors.Is(err, errInvalidTicket) {
		writeJSON(w, http.StatusNotFound, map[string]any{"valid": false, "error": "invalid_ticket", "message": invalidTicketMessage})
		return
	}
	if errors.Is(err, errTicketNotYetKnown) {
		w.Header().Set("Retry-After", "2")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "try_again", "message": notYetKnownMessage})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, check)
}

// sameDay: a and b fall on one calendar day in the time zone.
func sameDay(a, b time.Time, timezone string) bool {
	la, lb := event.InZone(a, timezone), event.InZone(b, timezone)
	return la.Year() == lb.Year() && la.YearDay() == lb.YearDay()
}
