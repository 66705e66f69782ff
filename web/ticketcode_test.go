package web

import (
	"image"
	"image/color"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/makiuchi-d/gozxing"
	zxingqr "github.com/makiuchi-d/gozxing/qrcode"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestSignedTicketCodeNamesItsTicketOnly(t *testing.T) {
	id := uuid.NewString()
	code := SignedTicketCode(testKey, id)
	if got, err := VerifyTicketCode(testKey, code); err != nil || got != id {
		t.Fatalf("VerifyTicketCode(own code) = %q, %v; want %s", got, err, id)
	}
	if got, err := VerifyTicketCode(testKey, "  "+code+"\n"); err != nil || got != id {
		t.Errorf("a scanner's surrounding whitespace: %q, %v", got, err)
	}
	other := uuid.NewString()
	sig := code[strings.LastIndex(code, ".")+1:]
	for name, bad := range map[string]string{
		"empty":                  "",
		"no prefix":              strings.TrimPrefix(code, ticketCodePrefix),
		"another ticket's id":    ticketCodePrefix + other + "." + sig,
		"signed by another key":  SignedTicketCode([]byte("another key, another cinema chain!"), id),
		"signature cut short":    code[:len(code)-1],
		"upper-case id":          ticketCodePrefix + strings.ToUpper(id) + "." + sig,
		"the booking's token":    ticketCodePrefix + id + "." + BookingToken(testKey, id),
		"a booking token itself": BookingToken(testKey, id),
	} {
		if got, err := VerifyTicketCode(testKey, bad); err == nil {
			t.Errorf("%s: %q verified as ticket %s", name, bad, got)
		}
	}
	// The code is the ticket id and a signature: nothing about the person.
	if !regexp.MustCompile(`^BX1\.[0-9a-f-]{36}\.[A-Za-z0-9_-]{22}$`).MatchString(code) {
		t.Errorf("code %q: want BX1.<uuid>.<22 base64url characters>", code)
	}
}

// TestQRCodeSVGScans draws the SVG path our ticket prints into pixels and reads it back with a
// QR decoder. The decoder is told the image is a pure code, unrotated, so it reads the modules
// where they are: its finder-pattern detector, which a camera frame needs, misjudges the size of
// about one in two hundred of these pixel-exact drawings of random codes, and the test failed
// now and then for that alone.
func TestQRCodeSVGScans(t *testing.T) {
	code := SignedTicketCode(testKey, uuid.NewString())
	size, path, err := QRCodeSVG(code)
	if err != nil {
		t.Fatal(err)
	}
	img := rasterize(t, size, path, 6)
	bitmap, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	result, err := zxingqr.NewQRCodeReader().Decode(bitmap, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	if err != nil {
		t.Fatalf("the QR code does not scan: %v", err)
	}
	if result.GetText() != code {
		t.Fatalf("the QR code reads %q, want %q", result.GetText(), code)
	}
}

// rasterize paints a path of "M x yhNv1h-Nz" rectangles, scale pixels a module.
func rasterize(t *testing.T, size int, path string, scale int) image.Image {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, size*scale, size*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	rects := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`).FindAllStringSubmatch(path, -1)
	if len(rects) == 0 || strings.Join(regexp.MustCompile(`M\d+ \d+h\d+v1h-\d+z`).FindAllString(path, -1), "") != path {
		t.Fatalf("path is not made of module runs: %.80s", path)
	}
	for _, r := range rects {
		x, _ := strconv.Atoi(r[1])
		y, _ := strconv.Atoi(r[2])
		n, _ := strconv.Atoi(r[3])
		if x < qrQuietZone || y < qrQuietZone || x+n > size-qrQuietZone || y >= size-qrQuietZone {
			t.Fatalf("module run at %d,%d (%d long) in the quiet zone of a %d-module code", x, y, n, size)
		}
		for py := y * scale; py < (y+1)*scale; py++ {
			for px := x * scale; px < (x+n)*scale; px++ {
				img.Set(px, py, color.Gray{})
			}
		}
	}
	return img
}
