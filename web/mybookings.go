package web

import (
	"crypto/hmac"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/catalog"
	"github.com/boxoffice/boxoffice/templates"
)

// "My bookings" lists the bookings made from this browser: the form remembers each one's id and
// token in a cookie only this site can read (HttpOnly, SameSite=Lax, Secure over TLS), newest
// first. Nothing is kept on the server; a cleared cookie forgets them, and an entry whose token
// does not verify is ignored.

const (
	myBookingsCookie = "boxoffice_bookings"
	myBookingsMax    = 20
	myBookingsMaxAge = 90 * 24 * time.Hour
)

// rememberBooking adds a booking to this browser's list.
func (s *Server) rememberBooking(w http.ResponseWriter, r *http.Request, bookingID string) {
	entries := []string{bookingID + "." + s.token(bookingID)}
	for _, e := range s.myBookingEntries(r) {
		if e.id != bookingID && len(entries) < myBookingsMax {
			entries = append(entries, e.id+"."+e.token)
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: myBookingsCookie, Value: strings.Join(entries, "~"), Path: "/",
		MaxAge: int(myBookingsMaxAge.Seconds()), HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteLaxMode,
	})
}

type myBookingEntry struct{ id, token string }

// myBookingEntries reads the cookie, keeping only well-formed entries whose token verifies.
func (s *Server) myBookingEntries(r *http.Request) []myBookingEntry {
	c, err := r.Cookie(myBookingsCookie)
	if err != nil {
		return nil
	}
	var out []myBookingEntry
	for _, raw := range strings.Split(c.Value, "~") {
		id, token, ok := strings.Cut(raw, ".")
		if !ok || uuid.Validate(id) != nil || !hmac.Equal([]byte(token), []byte(s.token(id))) {
			continue
		}
		out = append(out, myBookingEntry{id: id, token: token})
		if len(out) == myBookingsMax {
			break
		}
	}
	return out
}

// myBookingsPage lists this browser's bookings with their status, each linking to its page.
func (s *Server) myBookingsPage(w http.ResponseWriter, r *http.Request) {
	var page templates.MyBookingsPage
	for _, e := range s.myBookingEntries(r) {
		b, err := s.loadBooking(r.Context(), e.id)
		if errors.Is(err, ErrBookingNotFound) {
			continue // not projected yet, or from another installation
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		item := templates.MyBooking{
			URL: s.withToken("/bookings/"+b.ID, b.ID), Seats: joinSeats(b.Seats), Status: b.Status,
			StatusTitle: stageTitles[b.Status], MovieTitle: "Unknown show",
		}
		if item.StatusTitle == "" {
			item.StatusTitle = b.Status
		}
		if show, err := s.catalog.Show(r.Context(), b.ShowID); err == nil {
			item.MovieTitle, item.TheatreName = show.MovieTitle, show.TheatreName
			item.When = show.LocalStart().Format("Mon 2 Jan, 15:04")
		} else if !errors.Is(err, catalog.ErrNotFound) {
			s.fail(w, r, err)
			return
		}
		page.Bookings = append(page.Bookings, item)
	}
	s.render(w, r, http.StatusOK, templates.MyBookingsView(page))
}
