package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	qrcode "github.com/yeqown/go-qrcode/v2"
)

// A ticket's QR code carries a signed ticket code, "BX1.<ticket id>.<signature>", and nothing
// else: no name, no phone, no seat. The door looks the ticket up by its id after checking the
// signature, so a code cannot be made up, and a photo of someone's ticket admits once.

const ticketCodePrefix = "BX1."

// SignedTicketCode is the code a ticket's QR code encodes: its id and 128 bits of HMAC-SHA256
// under the web's key, told apart from booking tokens by what is signed.
func SignedTicketCode(key []byte, ticketID string) string {
	return ticketCodePrefix + ticketID + "." + ticketSignature(key, ticketID)
}

func ticketSignature(key []byte, ticketID string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("ticket:" + ticketID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// errBadTicketCode is a code that is not one of ours: mistyped, damaged or made up.
var errBadTicketCode = errors.New("this is not a valid Boxoffice ticket code")

// VerifyTicketCode checks a scanned code's signature and returns the ticket id it names.
func VerifyTicketCode(key []byte, code string) (string, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(code), ticketCodePrefix)
	if !ok {
		return "", errBadTicketCode
	}
	id, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return "", errBadTicketCode
	}
	parsed, err := uuid.Parse(id)
	if err != nil || parsed.String() != id {
		return "", errBadTicketCode
	}
	if !hmac.Equal([]byte(sig), []byte(ticketSignature(key, id))) {
		return "", errBadTicketCode
	}
	return id, nil
}

// qrQuietZone is the blank margin scanners need around a QR code, in modules.
const qrQuietZone = 4

// QRCodeSVG draws text as a QR code: the number of modules a side (quiet zone included) and one
// SVG path of the dark modules, one unit each, for a viewBox of that size.
func QRCodeSVG(text string) (size int, path string, err error) {
	qr, err := qrcode.NewWith(text, qrcode.WithErrorCorrectionLevel(qrcode.ErrorCorrectionMedium))
	if err != nil {
		return 0, "", fmt.Errorf("qr code: %w", err)
	}
	var bitmap bitmapWriter
	if err := qr.Save(&bitmap); err != nil {
		return 0, "", fmt.Errorf("qr code: %w", err)
	}
	var b strings.Builder
	for y, row := range bitmap.rows {
		for x := 0; x < len(row); x++ {
			if !row[x] {
				continue
			}
			// A run of dark modules is one rectangle.
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x+qrQuietZone, y+qrQuietZone, run, run)
			x += run - 1
		}
	}
	return len(bitmap.rows) + 2*qrQuietZone, b.String(), nil
}

// bitmapWriter takes the QR code's modules from the library: rows of dark (true) and light.
type bitmapWriter struct{ rows [][]bool }

func (w *bitmapWriter) Write(m qrcode.Matrix) error {
	w.rows = m.Bitmap()
	return nil
}

func (w *bitmapWriter) Close() error { return nil }
