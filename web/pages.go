package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
	"github.com/boxoffice/boxoffice/templates"
)

// siteTimezone is where the chain's cinemas are: days and times on the site are theirs.
const siteTimezone = "Europe/London"

// maxFormBytes bounds a booking form: a few fields and at most a few dozen seats.
const maxFormBytes = 16 << 10

func (s *Server) moviesPage(w http.ResponseWriter, r *http.Request) {
	movies, err := s.catalog.Movies(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page := templates.MoviesPage{}
	for _, m := range movies {
		page.Movies = append(page.Movies, movieCard(m))
	}
	s.render(w, r, http.StatusOK, templates.MoviesView(page))
}

func (s *Server) moviePage(w http.ResponseWriter, r *http.Request) {
	movie, err := s.catalog.Movie(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := event.InZone(s.deps.Now(), siteTimezone)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	day := today
	if v := r.URL.Query().Get("day"); v != "" {
		parsed, err := time.ParseInLocation("2006-01-02", v, now.Location())
		if err != nil || parsed.Before(today) || parsed.After(today.AddDate(0, 0, catalog.ScheduleDays)) {
			s.fail(w, r, &badRequestError{fmt.Sprintf("day=%q: pick a day from today to %d days ahead, as YYYY-MM-DD.", v, catalog.ScheduleDays)})
			return
		}
		day = parsed
	}
	page := templates.MoviePage{Movie: movieCard(movie), DayLabel: dayLabel(day, today)}
	for i := 0; i <= catalog.ScheduleDays; i++ {
		d := today.AddDate(0, 0, i)
		page.Days = append(page.Days, templates.DayTab{
			Label: dayLabel(d, today), Date: d.Format("2006-01-02"), Selected: d.Equal(day),
			URL: "/movies/" + url.PathEscape(movie.ID) + "?day=" + d.Format("2006-01-02"),
		})
	}
	shows, err := s.catalog.UpcomingShows(r.Context(), movie.ID, day, day.AddDate(0, 0, 1))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	left, err := s.seatsLeft(r.Context(), shows)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, sh := range shows {
		if len(page.Theatres) == 0 || page.Theatres[len(page.Theatres)-1].TheatreName != sh.TheatreName {
			page.Theatres = append(page.Theatres, templates.TheatreShowtimes{TheatreName: sh.TheatreName, Location: sh.TheatreLocation()})
		}
		t := &page.Theatres[len(page.Theatres)-1]
		t.Times = append(t.Times, templates.ShowTime{
			ShowID: sh.ID, URL: "/shows/" + url.PathEscape(sh.ID), Time: sh.LocalStart().Format("15:04"),
			Screen: fmt.Sprintf("Screen %d", sh.ScreenNumber), Price: formatMoney(sh.PriceCents, sh.Currency),
			SeatsLeft: left[sh.ID], SoldOut: left[sh.ID] == 0, Started: !sh.StartsAt.After(s.deps.Now()),
		})
	}
	s.render(w, r, http.StatusOK, templates.MovieView(page))
}

// seatsLeft counts the free seats of each show, as far as the web has heard.
func (s *Server) seatsLeft(ctx context.Context, shows []catalog.Show) (map[string]int, error) {
	ids := make([]string, len(shows))
	for i, sh := range shows {
		ids[i] = sh.ID
	}
	capacity, err := s.catalog.SeatCounts(ctx)
	if err != nil {
		return nil, err
	}
	taken, err := s.projection.TakenCounts(ctx, ids)
	if err != nil {
		return nil, err
	}
	left := make(map[string]int, len(shows))
	for _, sh := range shows {
		left[sh.ID] = max(capacity[sh.ScreenID]-taken[sh.ID], 0)
	}
	return left, nil
}

func (s *Server) showPage(w http.ResponseWriter, r *http.Request) {
	page, err := s.showView(r.Context(), r.PathValue("id"), nil, templates.BookingForm{}, uuid.NewString())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, templates.ShowView(page))
}

// showView builds the seat map and form of a show, with the given seats selected and the
// form's values and errors echoed back.
func (s *Server) showView(ctx context.Context, showID string, selected []string, form templates.BookingForm, idempotencyKey string) (templates.ShowPage, error) {
	show, err := s.catalog.Show(ctx, showID)
	if err != nil {
		return templates.ShowPage{}, err
	}
	movie, err := s.catalog.Movie(ctx, show.MovieID)
	if err != nil {
		return templates.ShowPage{}, err
	}
	seats, err := s.catalog.Seats(ctx, show.ScreenID)
	if err != nil {
		return templates.ShowPage{}, err
	}
	seatMap, err := s.projection.ShowSeats(ctx, show.ID)
	if err != nil {
		return templates.ShowPage{}, err
	}
	page := templates.ShowPage{
		SeatsURL: fmt.Sprintf("/shows/%s/seats/events?v=%d&t=%d", url.PathEscape(show.ID), seatMap.Version, seatMap.ReadAt.UnixMilli()),
		ShowID:   show.ID, MovieID: show.MovieID, MovieTitle: show.MovieTitle, AgeRating: movie.AgeRating,
		TheatreName: show.TheatreName, Location: show.TheatreLocation(),
		Screen: fmt.Sprintf("Screen %d", show.ScreenNumber),
		When:   show.LocalStart().Format("Monday 2 January, 15:04"),
		Price:  formatMoney(show.PriceCents, show.Currency), Started: !show.StartsAt.After(s.deps.Now()),
		MaxSeats: MaxSeatsPerBooking, Form: form, TestCards: gateway.TestCardsHint, IdempotencyKey: idempotencyKey,
	}
	for _, seat := range seats {
		if len(page.Rows) == 0 || page.Rows[len(page.Rows)-1].Label != seat.Row {
			page.Rows = append(page.Rows, templates.SeatRow{Label: seat.Row})
		}
		row := &page.Rows[len(page.Rows)-1]
		view := seatView(seat, seatMap.State(seat.Label))
		view.Selected = slices.Contains(selected, seat.Label) && !view.Taken
		row.Seats = append(row.Seats, view)
		page.Columns = max(page.Columns, seat.Position)
	}
	page.Summary = summary(show, selected)
	return page, nil
}

func seatView(seat catalog.Seat, state SeatState) templates.SeatView {
	return templates.SeatView{
		Row: seat.Row, Label: seat.Label, Number: seat.Number, Column: seat.Position,
		Taken: state != SeatFree, Held: state == SeatHeld,
	}
}

// seatsOfScreen lists a screen's seats. They never change, so each screen's are read once and
// kept: the live seat map and the running total need them on every update.
func (s *Server) seatsOfScreen(ctx context.Context, screenID string) ([]catalog.Seat, error) {
	if cached, ok := s.screenSeats.Load(screenID); ok {
		return cached.([]catalog.Seat), nil
	}
	seats, err := s.catalog.Seats(ctx, screenID)
	if err != nil {
		return nil, err
	}
	cached, _ := s.screenSeats.LoadOrStore(screenID, seats)
	return cached.([]catalog.Seat), nil
}

// renderSeatUpdates renders changed seats of a show for its live seat maps.
func (s *Server) renderSeatUpdates(ctx context.Context, showID string, changed map[string]SeatState) ([]byte, error) {
	show, err := s.catalog.Show(ctx, showID)
	if err != nil {
		return nil, err
	}
	seats, err := s.seatsOfScreen(ctx, show.ScreenID)
	if err != nil {
		return nil, err
	}
	var views []templates.SeatView
	for _, seat := range seats {
		if state, ok := changed[seat.Label]; ok {
			views = append(views, seatView(seat, state))
		}
	}
	var buf bytes.Buffer
	if err := templates.SeatUpdates(views).Render(ctx, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// seatEvents streams a show's seat changes to its live seat map.
// seatEvents streams a show's seat map. The connection's goroutine then waits, for hours maybe,
// with every frame of this call on its stack: with 10,000 maps open, stacks were the largest
// part of the web's memory. A goroutine's stack is halved at a collection only while less than
// a quarter of it is in use, so the frames that wait are kept lean (the show is looked up in a
// call of its own, not here), and a 16 KB stack grown during the request can go back to 8 KB.
func (s *Server) seatEvents(w http.ResponseWriter, r *http.Request) {
	showID := r.PathValue("id")
	if err := s.streamableShow(r.Context(), showID); err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	s.seatHub.Serve(w, r, showID, parseSeatVersion(q.Get("v")), parseRenderedAt(q.Get("t")))
}

// streamableShow checks that a show exists, once per show: the catalog only ever adds shows, so
// a show's viewers are not each a query. Never inlined: its locals (a whole catalog.Show) would
// otherwise sit in seatEvents' frame for the life of the stream.
//
//go:noinline
func (s *Server) streamableShow(ctx context.Context, showID string) error {
	if _, ok := s.streamedShows.Load(showID); ok {
		return nil
	}
	if _, err := s.catalog.Show(ctx, showID); err != nil {
		return err
	}
	s.streamedShows.Store(showID, struct{}{})
	return nil
}

func summary(show catalog.Show, selected []string) templates.ShowSummary {
	return templates.ShowSummary{
		Seats: selected,
		Price: formatMoney(show.PriceCents, show.Currency),
		Total: formatMoney(show.PriceCents*int64(len(selected)), show.Currency),
	}
}

// showSummary answers the seat map's htmx request with the running total.
func (s *Server) showSummary(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, &badRequestError{"The form could not be read."})
		return
	}
	show, err := s.catalog.Show(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	seatMap, err := s.projection.ShowSeats(r.Context(), show.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A seat chosen on a map that had not yet heard it was taken, or chosen earlier and taken by
	// someone else since: say so, drop it from the total, and show it taken on the map at once.
	var selected, justTaken, reticked []string
	for _, label := range r.PostForm["seats"] {
		if seatMap.State(label) == SeatFree {
			selected = appendOnce(selected, label)
		} else {
			justTaken = appendOnce(justTaken, label)
		}
	}
	// A free seat the last total listed but the form no longer has was unticked either by the
	// person or by an update redrawing it. Asked for after an update, or by a click that ticked a
	// seat (one click changes one seat), it was the update's doing: it is ticked again.
	redrawn := r.PostForm.Get("after_update") == "1"
	for _, label := range r.PostForm["seats"] {
		redrawn = redrawn || !slices.Contains(r.PostForm["summary_seats"], label)
	}
	for _, label := range r.PostForm["summary_seats"] {
		switch {
		case seatMap.State(label) != SeatFree:
			justTaken = appendOnce(justTaken, label)
		case redrawn && !slices.Contains(selected, label) && len(selected) < MaxSeatsPerBooking:
			selected = append(selected, label)
			reticked = append(reticked, label)
		}
	}
	sum := summary(show, selected)
	sum.JustTaken = justTaken
	var cells []templates.SeatView
	if len(justTaken)+len(reticked) > 0 {
		seats, err := s.seatsOfScreen(r.Context(), show.ScreenID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, seat := range seats {
			if slices.Contains(justTaken, seat.Label) || slices.Contains(reticked, seat.Label) {
				view := seatView(seat, seatMap.State(seat.Label))
				view.Selected = slices.Contains(reticked, seat.Label)
				cells = append(cells, view)
			}
		}
	}
	s.render(w, r, http.StatusOK, templates.SummaryWithSeats(sum, cells))
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// formBookingRequest reads the seat-map form's fields.
func formBookingRequest(form url.Values) BookingRequest {
	return BookingRequest{
		ShowID: form.Get("show_id"), Seats: form["seats"], Name: form.Get("name"),
		Phone: form.Get("phone"), CardNumber: form.Get("card_number"),
	}
}

// bookingFormSubmit books from the seat-map form: on success the browser goes to the status
// page; on bad input the same page comes back with the choices kept and each problem named.
func (s *Server) bookingFormSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, &badRequestError{"The form could not be read: it may be too large."})
		return
	}
	req := formBookingRequest(r.PostForm)
	bookingID, _, err := s.intake.Submit(r.Context(), s.clientOf(r), req, r.PostForm.Get("idempotency_key"))
	var validation *ValidationError
	if errors.As(err, &validation) || errors.Is(err, errUnavailable) {
		form := templates.BookingForm{Name: req.Name, Phone: req.Phone, Errors: map[string]string{}}
		status := http.StatusUnprocessableEntity
		if validation != nil {
			form.Errors = validation.Fields
			form.FormMessage = "Please check the highlighted fields."
			if _, badCard := validation.Fields["card_number"]; !badCard {
				form.CardNumber = req.CardNumber // keep it only to spare retyping a good number
			}
		} else {
			status = http.StatusServiceUnavailable
			form.FormMessage = "Booking is briefly unavailable. Nothing was booked or charged: please try again in a moment."
			if errors.Is(err, errBusy) {
				form.FormMessage = busyMessage
			}
		}
		// The same key again: nothing was booked with it, and a second press must not book twice.
		key := r.PostForm.Get("idempotency_key")
		if key == "" {
			key = uuid.NewString()
		}
		page, viewErr := s.showView(r.Context(), req.ShowID, req.Seats, form, key)
		if viewErr != nil {
			s.fail(w, r, err) // not even the show exists: the plain error page says why
			return
		}
		s.render(w, r, status, templates.ShowView(page))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.rememberBooking(w, r, bookingID)
	http.Redirect(w, r, s.withToken("/bookings/"+bookingID, bookingID), http.StatusSeeOther)
}

// loadBooking reads a booking for display, with its token for the links it shows.
func (s *Server) loadBooking(ctx context.Context, id string) (BookingStatus, error) {
	b, err := s.projection.Booking(ctx, id)
	if err == nil {
		s.dress(&b)
	}
	return b, err
}

// loadBookingAsStored is loadBooking with every stage stored, in any order, for the SSE hub.
func (s *Server) loadBookingAsStored(ctx context.Context, id string) (BookingStatus, error) {
	b, err := s.projection.bookingAsStored(ctx, id)
	if err == nil {
		s.dress(&b)
	}
	return b, err
}

// dress adds what a booking shows but the projection does not store: its token for the links,
// and its ticket's signed code for the QR code.
func (s *Server) dress(b *BookingStatus) {
	b.Token = s.token(b.ID)
	if b.Ticket != nil {
		b.TicketCode = SignedTicketCode(s.capabilityKey, b.Ticket.TicketID)
	}
}

func (s *Server) bookingPage(w http.ResponseWriter, r *http.Request) {
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
	page := templates.BookingPage{
		BookingID: b.ID, Seats: joinSeats(b.Seats), BookedUnder: b.CustomerName,
		Progress: progressView(b, -1),
	}
	if show, err := s.catalog.Show(r.Context(), b.ShowID); err == nil {
		page.MovieTitle, page.TheatreName = show.MovieTitle, show.TheatreName
		page.When = show.LocalStart().Format("Monday 2 January, 15:04")
		page.Screen = fmt.Sprintf("Screen %d", show.ScreenNumber)
	} else if !errors.Is(err, catalog.ErrNotFound) {
		s.fail(w, r, err)
		return
	} else {
		page.MovieTitle = "Unknown show"
	}
	if !page.Progress.Final {
		page.EventsURL = s.withToken("/bookings/"+b.ID+"/events", b.ID, "after", strconv.Itoa(len(b.Stages)))
	}
	s.render(w, r, http.StatusOK, templates.BookingView(page))
}

// holdCountdown answers the status page's countdown, once a second while the seats are held.
func (s *Server) holdCountdown(w http.ResponseWriter, r *http.Request) {
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
	s.render(w, r, http.StatusOK, templates.HoldFragment(holdView(b, s.deps.Now())))
}

// bookingEvents streams a booking's stages: HTML for the page, JSON for the API.
func (s *Server) bookingEvents(kind StreamKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := s.bookingID(r)
		if err == nil {
			err = s.hub.Serve(w, r, kind, id) // reads the booking first: unknown, nothing is written
		}
		if err != nil {
			s.fail(w, r, err)
		}
	}
}

func (s *Server) ticketPrintPage(w http.ResponseWriter, r *http.Request) {
	id, err := s.bookingID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := s.loadBooking(r.Context(), id)
	if err == nil && b.Ticket == nil {
		err = errNotFound // no ticket (yet): nothing to print
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, templates.TicketPrintView(ticketView(*b.Ticket, b)))
}
