package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/templates"
)

// This file turns what the web knows into the view models the templates render.

func movieCard(m catalog.Movie) templates.MovieCard {
	return templates.MovieCard{
		ID: m.ID, Title: m.Title, Tagline: m.Tagline, Synopsis: m.Synopsis,
		Runtime: formatRuntime(m.RuntimeMinutes), AgeRating: m.AgeRating, Genre: m.Genre, PosterHue: m.PosterHue,
	}
}

// stageTitles are the words people read for each stage.
var stageTitles = map[string]string{
	StatusRequested: "Booking requested",
	StatusConfirmed: "Seats confirmed",
	StatusRejected:  "Booking rejected",
	StatusPaid:      "Payment received",
	StatusFailed:    "Payment failed",
	StatusNotified:  "Text message sent",
	StatusTicketed:  "Ticket issued",
}

var happyPath = []string{StatusRequested, StatusConfirmed, StatusPaid, StatusNotified, StatusTicketed}

// statusAt is the booking's status as of its first n stages: what progressView says, without
// rendering anything (the JSON stream needs only this, and drawing the ticket's QR code for it
// showed up in profiles).
func statusAt(b BookingStatus, n int) string {
	if n >= len(b.Stages) {
		return b.Status
	}
	status := StatusRequested
	for _, st := range b.Stages[:n] {
		if statusRank[st.Name] > statusRank[status] {
			status = st.Name
		}
	}
	return status
}

// progressView renders the first n stages of b (all of them when n < 0): the status page on
// load, and each SSE update as of the stage it announces.
func progressView(b BookingStatus, n int) templates.Progress {
	stages := b.Stages
	if n >= 0 && n < len(stages) {
		stages = stages[:n]
	}
	status := StatusRequested
	p := templates.Progress{}
	for _, st := range stages {
		view := templates.StageView{Name: st.Name, Title: stageTitles[st.Name], Detail: st.Detail,
			At: event.InZone(st.At, siteTimezone).Format("15:04:05"), State: "done"}
		if st.Name == StatusRejected || st.Name == StatusFailed {
			view.State = "failed"
		}
		p.Stages = append(p.Stages, view)
		if statusRank[st.Name] > statusRank[status] {
			status = st.Name
		}
	}
	if n < 0 || n >= len(b.Stages) {
		status = b.Status
	}
	p.Status = status
	p.Final = IsFinal(status)
	p.Failed = status == StatusRejected || status == StatusFailed
	if p.Failed {
		p.Reason = b.Reason
		p.RetryURL = "/shows/" + url.PathEscape(b.ShowID)
	} else {
		// The stages still to come, shown as pending.
		for _, name := range happyPath[len(p.Stages):] {
			p.Stages = append(p.Stages, templates.StageView{Name: name, Title: stageTitles[name], State: "pending"})
		}
	}
	if status == StatusTicketed && b.Ticket != nil {
		t := ticketView(*b.Ticket, b)
		p.Ticket = &t
	}
	if status == StatusConfirmed && b.HoldUntil != nil {
		h := holdView(b, time.Time{})
		p.Hold = &h
	}
	return p
}

// holdView is the countdown of a confirmed booking's hold as of now (zero: no countdown yet,
// for a fragment rendered once and sent to many).
func holdView(b BookingStatus, now time.Time) templates.HoldView {
	h := templates.HoldView{URL: "/bookings/" + b.ID + "/hold?token=" + url.QueryEscape(b.Token)}
	if b.Status != StatusConfirmed || b.HoldUntil == nil {
		return h // paid, or ended: the next progress fragment says what happened
	}
	h.Until = event.InZone(*b.HoldUntil, siteTimezone).Format("15:04:05")
	h.Active = true
	if !now.IsZero() {
		left := b.HoldUntil.Sub(now).Round(time.Second)
		if left <= 0 {
			h.Expired, h.Active = true, false
		} else {
			h.Left = fmt.Sprintf("%d:%02d", int(left.Minutes()), int(left.Seconds())%60)
		}
	}
	return h
}

// ticketView shows a ticket of booking b: its token is for the link to the printable page, its
// signed ticket code for the QR code.
func ticketView(t event.TicketIssued, b BookingStatus) templates.TicketView {
	local := event.InZone(t.StartsAt, t.Timezone)
	view := templates.TicketView{
		TicketID:        t.TicketID,
		Code:            t.Code,
		MovieTitle:      t.MovieTitle,
		TheatreName:     t.TheatreName,
		TheatreLocation: t.TheatreLocation,
		Date:            local.Format("Monday 2 January 2006"),
		Time:            local.Format("15:04"),
		Screen:          fmt.Sprintf("Screen %d", t.ScreenNumber),
		Seats:           joinSeats(t.Seats),
		BookedUnder:     t.BookedUnder,
		Price:           formatMoney(t.AmountCents, t.Currency),
		PrintURL:        "/bookings/" + b.ID + "/ticket?token=" + url.QueryEscape(b.Token),
		SignedCode:      b.TicketCode,
	}
	if b.TicketCode != "" {
		// A code of ~60 bytes always fits a QR code; should drawing fail, the ticket still shows
		// its signed code in words, which the door can type in.
		view.QRSize, view.QRPath, _ = QRCodeSVG(b.TicketCode)
	}
	return view
}

// renderer renders the hub's SSE events: HTML fragments for the page, JSON for scripts.
type renderer struct{ s *Server }

// StageEvent renders stage seq. The page swaps the whole progress fragment as of that stage, so
// a stage missed or repeated never leaves the page wrong.
func (r renderer) StageEvent(kind StreamKind, b BookingStatus, seq int) (string, []byte, error) {
	st := b.Stages[seq-1]
	if kind == StreamJSON {
		data, err := json.Marshal(apiStage{Name: st.Name, At: st.At, Detail: st.Detail, Status: statusAt(b, seq)})
		return st.Name, data, err
	}
	var buf bytes.Buffer
	err := templates.ProgressFragment(progressView(b, seq)).Render(context.Background(), &buf)
	return st.Name, buf.Bytes(), err
}

// OutcomeEvents renders the finished booking: for scripts its whole status (with the ticket),
// for the page the final fragment with the ticket card or the reason.
func (r renderer) OutcomeEvents(kind StreamKind, b BookingStatus) ([]string, [][]byte, error) {
	if kind == StreamJSON {
		data, err := json.Marshal(apiBookingStatus(b))
		return []string{"outcome"}, [][]byte{data}, err
	}
	var buf bytes.Buffer
	err := templates.ProgressFragment(progressView(b, -1)).Render(context.Background(), &buf)
	return []string{"outcome"}, [][]byte{buf.Bytes()}, err
}
