package web

import (
	"net/http"

	"github.com/google/uuid"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/notification/sms"
	"github.com/boxoffice/boxoffice/templates"
)

// The sandbox SMS inbox stands in for people's phones, and phones are private: a visitor sees
// the texts of the bookings made in this browser (the My bookings cookie), a script those of a
// booking whose token it holds (?booking=…&token=…), and only staff see everyone's.

const inboxLimit = 100

// inbox reads the texts this request may see, with ?phone= narrowing them.
func (s *Server) inbox(r *http.Request) ([]sms.InboxMessage, bool, error) {
	phone := r.URL.Query().Get("phone")
	if isStaff(r.Context()) {
		msgs, err := s.deps.SMSInbox.Inbox(r.Context(), phone, inboxLimit)
		return msgs, true, err
	}
	var ids []string
	for _, e := range s.myBookingEntries(r) {
		ids = append(ids, e.id)
	}
	if id, err := uuid.Parse(r.URL.Query().Get("booking")); err == nil && s.tokenMatches(r, id.String()) {
		ids = append(ids, id.String())
	}
	if len(ids) == 0 {
		return nil, false, nil
	}
	msgs, err := s.deps.SMSInbox.InboxOf(r.Context(), ids, phone, inboxLimit)
	return msgs, false, err
}

func (s *Server) smsInboxPage(w http.ResponseWriter, r *http.Request) {
	msgs, everyone, err := s.inbox(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page := templates.SMSInboxPage{Phone: r.URL.Query().Get("phone"), Everyone: everyone}
	now := s.deps.Now()
	for _, m := range msgs {
		page.Messages = append(page.Messages, templates.SMSMessage{
			Phone: m.Phone, Body: m.Body, SentAt: event.InZone(m.SentAt, siteTimezone).Format("Mon 2 Jan 15:04:05"),
			Ago: ago(now.Sub(m.SentAt)),
		})
	}
	s.render(w, r, http.StatusOK, templates.SMSInboxView(page))
}

// apiSMSInbox lists the texts the request may see, newest first: what a phone would show.
func (s *Server) apiSMSInbox(w http.ResponseWriter, r *http.Request) {
	msgs, _, err := s.inbox(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if msgs == nil {
		msgs = []sms.InboxMessage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}
