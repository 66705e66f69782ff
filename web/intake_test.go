package web

import (
	"strings"
	"testing"
)

func TestNormalizeCleansWhatPeopleType(t *testing.T) {
	clean, errs := normalize(BookingRequest{
		ShowID: " ldn-1-20261127-1930 ", Seats: []string{"f7", " F8 "}, Name: "  Ada   Lovelace ",
		Phone: "+44 (0)7700-900.123", CardNumber: "4242 4242 4242 4242",
	})
	if len(errs) != 0 {
		t.Fatalf("errors for a good request: %v", errs)
	}
	if clean.ShowID != "ldn-1-20261127-1930" || strings.Join(clean.Seats, ",") != "F7,F8" ||
		clean.Name != "Ada Lovelace" || clean.Phone != "+4407700900123" || clean.CardNumber != "4242424242424242" {
		t.Errorf("normalised to %+v", clean)
	}
}

func TestNormalizeNamesEachBadField(t *testing.T) {
	good := BookingRequest{ShowID: "ldn-1-20261127-1930", Seats: []string{"F7"}, Name: "Ada", Phone: "07700900123", CardNumber: "4242424242424242"}
	for _, tc := range []struct {
		name   string
		change func(*BookingRequest)
		field  string
	}{
		{"show id with a slash", func(r *BookingRequest) { r.ShowID = "../etc" }, "show_id"},
		{"seat without a number", func(r *BookingRequest) { r.Seats = []string{"F"} }, "seats"},
		{"seat with a script", func(r *BookingRequest) { r.Seats = []string{"<script>"} }, "seats"},
		{"name too long", func(r *BookingRequest) { r.Name = strings.Repeat("a", 101) }, "name"},
		{"name with a control character", func(r *BookingRequest) { r.Name = "Ada\x00" }, "name"},
		{"plus in the middle of the phone", func(r *BookingRequest) { r.Phone = "0770+0900123" }, "phone"},
		{"phone too long", func(r *BookingRequest) { r.Phone = "+1234567890123456" }, "phone"},
		{"no card", func(r *BookingRequest) { r.CardNumber = "" }, "card_number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := good
			req.Seats = append([]string(nil), good.Seats...)
			tc.change(&req)
			_, errs := normalize(req)
			if len(errs) != 1 || errs[tc.field] == "" {
				t.Errorf("errors %v, want exactly one, for %s", errs, tc.field)
			}
		})
	}
}

// TestNamesThatReadDifferentlyAreRefused: invisible format characters and separators could make
// a name read differently on the ticket than it was typed; every real script and accent is kept.
func TestNamesThatReadDifferentlyAreRefused(t *testing.T) {
	good := BookingRequest{ShowID: "ldn-1-20261127-1930", Seats: []string{"F7"}, Phone: "07700900123", CardNumber: "4242424242424242"}
	for _, name := range []string{
		"Ada \u202eecalevoL", // right-to-left override
		"Ada\u2066Lovelace\u2069", "A\u200bda", "\ufeffAda", "Ada\u00adLovelace", "Ada\u2028Lovelace",
		"Ada\u2029Lovelace", "Ada\u200d", "\u200cAda", "Ada \u200d Lovelace", "Ada\u061cLovelace", "Ad\u200dam", "Lo\u200cve",
	} {
		req := good
		req.Name = name
		if _, errs := normalize(req); !strings.Contains(errs["name"], "invisible characters") {
			t.Errorf("name %+q: errors %v, want the name refused for its invisible characters", name, errs)
		}
	}
	for _, name := range []string{
		"Zoë Ångström-Øster", "José Martínez", "Nguyễn Thị Minh Khai", "محمد\u200cرضا", "दिव्या\u200dशर्मा",
		"王小明", "Владимир", "Ngũgĩ wa Thiong'o", "O'Brien", "שרה כהן", "👩\u200d🎤 Ada",
	} {
		req := good
		req.Name = name
		if _, errs := normalize(req); len(errs) != 0 {
			t.Errorf("name %+q: errors %v, want it accepted", name, errs)
		}
	}
}

func TestFormatMoney(t *testing.T) {
	for cents, want := range map[int64]string{0: "£0.00", 950: "£9.50", 2790: "£27.90", -100: "-£1.00"} {
		if got := formatMoney(cents, "GBP"); got != want {
			t.Errorf("formatMoney(%d) = %q, want %q", cents, got, want)
		}
	}
}

// TestPhoneIdentityIgnoresHowTheNumberIsWritten: one line, written nationally or
// internationally, with spaces or without, is one buyer for the seat caps.
func TestPhoneIdentityIgnoresHowTheNumberIsWritten(t *testing.T) {
	want := phoneIdentity("+44 7700 900123")
	for _, phone := range []string{"+447700900123", "07700 900123", "0044 7700 900123", "(07700) 900-123"} {
		if got := phoneIdentity(phone); got != want {
			t.Errorf("phoneIdentity(%q) = %q, want %q as for +44 7700 900123", phone, got, want)
		}
	}
	if phoneIdentity("+44 7700 900124") == want {
		t.Error("another number has the same identity")
	}
}
