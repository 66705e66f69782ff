package templates

import (
	"context"
	"strconv"
	"strings"

	"github.com/a-h/templ"
)

// posterStyle paints a film's drawn poster from its hue. Only integers reach the CSS, so it is
// safe to mark as such.
func posterStyle(hue int) templ.SafeCSS {
	h := ((hue % 360) + 360) % 360
	h2 := (h + 40) % 360
	return templ.SafeCSS("--poster-hue:" + strconv.Itoa(h) + ";background-image:linear-gradient(160deg,hsl(" +
		strconv.Itoa(h) + " 70% 38%) 0%,hsl(" + strconv.Itoa(h2) + " 65% 22%) 60%,hsl(" + strconv.Itoa(h2) + " 60% 10%) 100%);")
}

// seatGridStyle gives a seat row as many grid columns as the widest row needs.
func seatGridStyle(columns int) templ.SafeCSS {
	if columns < 1 {
		columns = 1
	}
	return templ.SafeCSS("grid-template-columns:repeat(" + strconv.Itoa(columns) + ",var(--seat-size));")
}

// seatColumnStyle places a seat in its column, so aisles stay empty columns.
func seatColumnStyle(column int) templ.SafeCSS {
	if column < 1 {
		column = 1
	}
	return templ.SafeCSS("grid-column:" + strconv.Itoa(column) + ";")
}

// seatName is what a screen reader says for a seat.
func seatName(row string, s SeatView) string {
	name := "Row " + row + " seat " + strconv.Itoa(s.Number)
	if s.Taken {
		name += ", taken"
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

// WithSandboxInbox tells the layout whether the sandbox SMS inbox exists (it does not with a
// real SMS provider), so the navigation only links to pages that are there.
func WithSandboxInbox(ctx context.Context, present bool) context.Context {
	return context.WithValue(ctx, sandboxInboxKey{}, present)
}

func sandboxInbox(ctx context.Context) bool {
	present, _ := ctx.Value(sandboxInboxKey{}).(bool)
	return present
}
