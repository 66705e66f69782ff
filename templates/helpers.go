package templates

import (
	"context"
	"strconv"
	"strings"

	"github.com/a-h/templ"
)

// The strict Content-Security-Policy forbids inline styles, so per-film and per-screen looks are
// classes of static/app.css, in bounded ranges (MaxGridColumns, hues in 5° steps).

// MaxGridColumns is the widest seat row (seats and aisles) the stylesheet has classes for.
const MaxGridColumns = 40

// posterClass paints a film's drawn poster from its hue, rounded to the stylesheet's 5° steps.
func posterClass(hue int) string {
	h := ((hue%360)+360)%360 + 2
	return "hue-" + strconv.Itoa(h/5*5%360)
}

// seatGridClass gives a seat row as many grid columns as the widest row needs.
func seatGridClass(columns int) string {
	return "cols-" + strconv.Itoa(min(max(columns, 1), MaxGridColumns))
}

// seatColumnClass places a seat in its column, so aisles stay empty columns.
func seatColumnClass(column int) string {
	return "col-" + strconv.Itoa(min(max(column, 1), MaxGridColumns))
}

// seatName is what a screen reader says for a seat.
func seatName(row string, s SeatView) string {
	name := "Row " + row + " seat " + strconv.Itoa(s.Number)
	switch {
	case s.Held:
		name += ", held by another buyer"
	case s.Taken:
		name += ", sold"
	}
	return name
}

// seatsLeft says how full a showtime is.
func seatsLeft(n int) string {
	if n == 1 {
		return "1 seat left"
	}
	return strconv.Itoa(n) + " seats left"
}

// seatsWord is "Seat" or "Seats".
func seatsWord(n int) string {
	if n == 1 {
		return "Seat"
	}
	return "Seats"
}

// describedBy joins the ids of a field's hint and error, skipping the empty ones.
func describedBy(ids ...string) string {
	var out []string
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	return strings.Join(out, " ")
}

// errorID is the id of a field's error message, or "" when it has none.
func errorID(errs map[string]string, field string) string {
	if errs[field] == "" {
		return ""
	}
	return field + "-error"
}

// stageStateLabel spells a stage's state out for screen readers.
func stageStateLabel(state string) string {
	switch state {
	case "done":
		return "Done: "
	case "failed":
		return "Failed: "
	default:
		return "Waiting: "
	}
}

// hintID is id when the hint it names is shown, "" otherwise.
func hintID(hint, id string) string {
	if hint == "" {
		return ""
	}
	return id
}

// joinSeats lists seat labels as people write them: "F7, F8".
func joinSeats(seats []string) string {
	return strings.Join(seats, ", ")
}

type sandboxInboxKey struct{}

type csrfKey struct{}

// WithCSRF gives templates the session's form token: a hidden field in forms, and htmx's
// X-CSRF-Token header on every request it makes.
func WithCSRF(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, csrfKey{}, token)
}

func csrfToken(ctx context.Context) string {
	token, _ := ctx.Value(csrfKey{}).(string)
	return token
}

// bodyAttrs puts the form token on <body> for htmx (hx-headers is inherited by every element).
func bodyAttrs(ctx context.Context) templ.Attributes {
	token := csrfToken(ctx)
	if token == "" {
		return templ.Attributes{}
	}
	return templ.Attributes{"hx-headers": `{"X-CSRF-Token":"` + token + `"}`}
}

// WithSandboxInbox tells the layout whether the sandbox SMS inbox exists (it does not with a
// real SMS provider), so the navigation only links to pages that are there.
func WithSandboxInbox(ctx context.Context, present bool) context.Context {
	return context.WithValue(ctx, sandboxInboxKey{}, present)
}

func sandboxInbox(ctx context.Context) bool {
	present, _ := ctx.Value(sandboxInboxKey{}).(bool)
	return present
}

// justTaken tells a person that seats they chose were taken by someone else meanwhile.
func justTaken(seats []string) string {
	if len(seats) == 1 {
		return "Seat " + seats[0] + " has just been taken by someone else. Please choose another."
	}
	return "Seats " + joinSeats(seats) + " have just been taken by someone else. Please choose others."
}
