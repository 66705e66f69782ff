package main

// A real-browser test: a headless Chromium, driven with chromedp, books by clicking through the
// pages and watches the status page change over server-sent events, as a person would.
// It needs Chromium: scripts/chromium.sh installs it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/makiuchi-d/gozxing"
	zxingqr "github.com/makiuchi-d/gozxing/qrcode"
)

const browserTimeout = 60 * time.Second

// pageProbe runs in every document the browser loads, before the page's own scripts. It
// records each SSE message htmx swaps in, so the test can tell a stage that arrived over the
// stream from one rendered with the page, and a random token that a reload would change.
const pageProbe = `(() => {
	const probe = window.__boxoffice = {doc: Math.random().toString(36).slice(2), sse: [], opened: 0, closed: 0, initial: null};
	document.addEventListener("htmx:sseOpen", () => { probe.opened++; });
	document.addEventListener("htmx:sseMessage", (e) => { probe.sse.push(e.detail.type); });
	document.addEventListener("htmx:sseClose", () => { probe.closed++; });
	document.addEventListener("DOMContentLoaded", () => {
		const stages = document.querySelector("#progress ol.stages");
		probe.initial = stages ? stages.dataset.status : null;
	});
})();`

// TestBrowserBookingShowsEachStageLive books two seats by clicking in Chromium, then watches
// the status page: the stages arrive over SSE without a reload; with the ticket service down
// the page stops at "Text message sent", and once it starts the ticket card appears by itself.
// The printable ticket has no navigation and prints to a PDF.
func TestBrowserBookingShowsEachStageLive(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetBooking)
	c.start(TargetPayment)
	c.start(TargetNotification)
	// No ticket service yet: bookings stop at notified until it starts.
	show := c.futureShow()
	shots := screenshotDir(t)

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	ctx = startBrowser(t, ctx)
	console := collectConsole(ctx)
	begin := time.Now()

	// The seat map: click two free seats' labels, the way a person does.
	browserStep(t, ctx, "open the seat map",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pageProbe})
			return err
		}),
		chromedp.Navigate(c.web.url+"/shows/"+show.ID),
		chromedp.WaitVisible(chromedp.CSS(`label[for="seat-C5"]`)),
	)
	for _, seat := range []string{"C5", "C6"} {
		free := browserEval[bool](t, ctx, fmt.Sprintf(`(e => !!e && !e.disabled && !e.checked)(document.getElementById("seat-%s"))`, seat))
		if !free {
			t.Fatalf("seat %s is not a free, unchosen seat on the map", seat)
		}
		browserStep(t, ctx, "click seat "+seat, chromedp.Click(chromedp.CSS(`label[for="seat-`+seat+`"]`), chromedp.NodeVisible))
	}
	browserPoll(t, ctx, "seats C5 and C6 checked by the clicks", `document.getElementById("seat-C5").checked
		&& document.getElementById("seat-C6").checked`)
	// The running total follows the clicks, before any other field is filled in.
	browserPoll(t, ctx, "the running total to name C5 and C6", `(s => s.includes("C5, C6") && s.includes("2 ×"))(document.getElementById("summary").textContent)`)
	browserStep(t, ctx, "fill in the form",
		chromedp.SendKeys(chromedp.ID("name"), "Grace Hopper", chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.ID("phone"), "07700 900456", chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.ID("card_number"), cardApproves, chromedp.NodeVisible),
	)
	saveScreenshot(t, ctx, shots, "1-seat-map.png")

	// Submit: the browser follows the redirect to the booking's status page. (A form the browser
	// finds invalid would not navigate at all, and RunResponse would wait until the deadline.)
	if !browserEval[bool](t, ctx, `document.getElementById("booking-form").checkValidity()`) {
		t.Fatal("the browser finds the filled-in booking form invalid")
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`#booking-form button[type="submit"]`), chromedp.NodeVisible))
	if err != nil {
		t.Fatalf("submit the booking form: %v", err)
	}
	if resp.Status != 200 {
		t.Fatalf("after submitting, %s answered %d", resp.URL, resp.Status)
	}
	location := browserRun(t, ctx, "read the location", chromedp.Location())
	m := regexp.MustCompile(`^` + regexp.QuoteMeta(c.web.url) + `/bookings/([0-9a-f-]{36})\?token=([A-Za-z0-9_-]+)$`).FindStringSubmatch(location)
	if m == nil {
		t.Fatalf("after submitting, the browser is at %s, want /bookings/{id}?token=…", location)
	}
	bookingID := m[1]
	doc := browserEval[string](t, ctx, `window.__boxoffice.doc`)
	t.Logf("status page %s loaded %s after start, showing status %q", location, time.Since(begin).Round(time.Millisecond),
		browserEval[string](t, ctx, `String(window.__boxoffice.initial)`))

	// Without the ticket service the booking gets as far as the text message, and the page
	// shows that stage done because the stream said so.
	browserPoll(t, ctx, `"Text message sent" done, from an SSE message`, `window.__boxoffice.sse.includes("notified")
		&& !!document.querySelector("#stage-notified.stage.done")`)
	if title := browserRun(t, ctx, "read the notified stage", chromedp.Text(chromedp.CSS(`#stage-notified .stage-title`))); !strings.Contains(title, "Text message sent") {
		t.Errorf("stage-notified reads %q, want it to say Text message sent", title)
	}
	if !browserEval[bool](t, ctx, `!!document.querySelector("#stage-ticketed.stage.pending") && document.querySelector("#ticket") === null`) {
		t.Fatal("the page shows a ticket (or a ticket stage that is not pending) while the ticket service is not running")
	}
	var st apiStatus
	c.getJSON(c.statusPath(bookingID), &st)
	if st.Status != "notified" || st.Ticket != nil {
		t.Fatalf("with no ticket service the booking is %q (ticket %v), want notified without a ticket", st.Status, st.Ticket != nil)
	}

	// The ticket service starts: the card appears on the open page, with no reload.
	ticketStarted := time.Now()
	c.start(TargetTicket)
	browserStep(t, ctx, "wait for the ticket card", chromedp.WaitVisible(chromedp.CSS(`#ticket [data-field="code"]`)))
	t.Logf("ticket card on the page %s after the ticket service started", time.Since(ticketStarted).Round(time.Millisecond))
	// htmx settles a swap in two steps: an element that keeps its id gets its new class about
	// 20 ms after the new content is in, so the stage's "done" is waited for, not read at once.
	browserPoll(t, ctx, `"Ticket issued" done`, `!!document.querySelector("#stage-ticketed.stage.done")`)
	// The stream ends with the outcome and its close event, and htmx closes the EventSource (no
	// reconnect loop). After that the page does not change any more.
	browserPoll(t, ctx, "the SSE stream closed", `window.__boxoffice.closed > 0`)
	if now := browserEval[string](t, ctx, `window.__boxoffice.doc`); now != doc {
		t.Fatal("the status page was reloaded: the ticket must arrive over the open SSE stream")
	}
	sse := browserEval[[]string](t, ctx, `window.__boxoffice.sse`)
	for _, name := range []string{"notified", "ticketed", "outcome"} {
		if !slices.Contains(sse, name) {
			t.Errorf("the page swapped SSE messages %v, without %q", sse, name)
		}
	}
	c.getJSON(c.statusPath(bookingID), &st)
	if st.Status != "ticketed" || st.Ticket == nil {
		t.Fatalf("GET /api/bookings/%s: %q with ticket %v, want ticketed", bookingID, st.Status, st.Ticket != nil)
	}
	card := map[string]string{}
	for _, field := range []string{"movie", "booked_under", "seats", "code"} {
		card[field] = strings.TrimSpace(browserRun(t, ctx, "read the ticket's "+field,
			chromedp.Text(chromedp.CSS(`#ticket [data-field="`+field+`"]`))))
	}
	for _, want := range []struct{ field, value string }{
		{"movie", show.MovieTitle}, {"booked_under", "Grace Hopper"}, {"seats", "C5, C6"}, {"code", st.Ticket.Code},
	} {
		if card[want.field] != want.value || want.value == "" {
			t.Errorf("ticket card %s = %q, want %q", want.field, card[want.field], want.value)
		}
	}
	saveScreenshot(t, ctx, shots, "2-status-page-with-ticket.png")

	// The printable ticket: the same code, no site navigation, and it prints.
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.Search(`//a[normalize-space(.)="Printable ticket"]`), chromedp.NodeVisible))
	if err != nil {
		t.Fatalf("follow the Printable ticket link: %v", err)
	}
	if want := c.web.url + "/bookings/" + bookingID + "/ticket?token=" + c.token(bookingID); resp.Status != 200 || resp.URL != want {
		t.Fatalf("Printable ticket link: %d %s, want 200 %s", resp.Status, resp.URL, want)
	}
	if code := strings.TrimSpace(browserRun(t, ctx, "read the printed code", chromedp.Text(chromedp.CSS(`#ticket [data-field="code"]`)))); code != st.Ticket.Code {
		t.Errorf("printable ticket code %q, want %q", code, st.Ticket.Code)
	}
	if navs := browserEval[int](t, ctx, `document.querySelectorAll("nav").length`); navs != 0 {
		t.Errorf("the printable ticket has %d nav elements, want none", navs)
	}
	saveScreenshot(t, ctx, shots, "3-printable-ticket.png")
	pdf := browserRun(t, ctx, "print to PDF", func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
		res, err := cdp.Call(ctx, tg, page.PrintToPDF, page.PrintToPDFParams{PrintBackground: new(true), PreferCSSPageSize: new(true)})
		return res.Data, err
	})
	if !bytes.HasPrefix(pdf, []byte("%PDF")) || len(pdf) < 5000 {
		t.Errorf("PrintToPDF gave %d bytes starting %q, want a PDF of at least 5000 bytes", len(pdf), pdf[:min(len(pdf), 8)])
	}
	saveArtifact(t, shots, "4-printable-ticket.pdf", pdf)
	// One ticket, one page: every page object in the PDF is a /Type /Page (not /Pages).
	if pages := regexp.MustCompile(`/Type\s*/Page[^s]`).FindAll(pdf, -1); len(pages) != 1 {
		t.Errorf("the printed ticket has %d pages, want exactly one", len(pages))
	}

	// The QR code on the printed page scans to the ticket's signed code: the PDF is rendered to
	// pixels (poppler's pdftoppm, as a printer would) and read by a QR decoder, as a phone would.
	// A phone takes several frames at different distances: the page is tried at three resolutions,
	// and one good read is a scan.
	var scanned string
	var misses []string
	for _, dpi := range []int{300, 200, 150} {
		printed := rasterizePDF(t, filepath.Join(shots, "4-printable-ticket.pdf"), dpi)
		if dpi == 300 {
			saveArtifact(t, shots, "4-printable-ticket-page.png", printed)
		}
		text, err := scanQR(t, printed)
		if err == nil {
			scanned = text
			break
		}
		misses = append(misses, fmt.Sprintf("%d dpi: %v", dpi, err))
	}
	if scanned != st.TicketCode || !strings.HasPrefix(scanned, "BX1.") {
		t.Errorf("the printed QR code scans as %q (%s), want the ticket's signed code %q", scanned, strings.Join(misses, "; "), st.TicketCode)
	}

	// At the door: staff sign in on the device, the scanned code checks out, is admitted once,
	// and a second scan is told so.
	openWithProbe(t, ctx, c.web.url+"/tickets/door", `#door_key`)
	browserStep(t, ctx, "type the door key", chromedp.SendKeys(chromedp.ID("door_key"), c.doorKey(), chromedp.NodeVisible))
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.Search(`//button[normalize-space(.)="Sign in"]`), chromedp.NodeVisible)); err != nil {
		t.Fatalf("sign in at the door: %v", err)
	}
	openWithProbe(t, ctx, c.web.url+"/tickets/verify?code="+url.QueryEscape(st.TicketCode), `#verify-result`)
	if verdict := browserEval[string](t, ctx, `document.getElementById("verify-result").dataset.verdict`); verdict != "valid" {
		t.Fatalf("the door's check says %q, want valid", verdict)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.Search(`//button[normalize-space(.)="Admit"]`), chromedp.NodeVisible)); err != nil {
		t.Fatalf("press Admit: %v", err)
	}
	if verdict := browserEval[string](t, ctx, `document.getElementById("verify-result").dataset.verdict`); verdict != "admitted" {
		t.Errorf("after Admit the door's page says %q, want admitted", verdict)
	}
	saveScreenshot(t, ctx, shots, "8-door-admitted.png")
	openWithProbe(t, ctx, c.web.url+"/tickets/verify?code="+url.QueryEscape(st.TicketCode), `#verify-result`)
	if verdict := browserEval[string](t, ctx, `document.getElementById("verify-result").dataset.verdict`); verdict != "already-admitted" {
		t.Errorf("the second scan says %q, want already-admitted", verdict)
	}
	t.Logf("browser part took %s", time.Since(begin).Round(time.Millisecond))

	for _, msg := range console.messages() {
		if msg.IsException() {
			t.Errorf("uncaught JavaScript exception on %s: %s", msg.URL, msg.Text)
		} else if msg.Type == chromedp.ConsoleError || msg.Type == chromedp.ConsoleWarning {
			t.Logf("browser console: %s (%s)", msg, msg.URL)
		}
	}
}

// startBrowser launches a headless Chromium for the test and closes it when the test ends,
// before the cluster's processes stop.
func startBrowser(t *testing.T, parent context.Context) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.NoSandbox, // tests often run as root, where Chromium's sandbox refuses to start
		chromedp.Headless,
		chromedp.WindowSize(1280, 1000),
	)
	if info, err := os.Stat("/usr/bin/chromium"); err == nil && !info.IsDir() {
		opts = append(opts, chromedp.ExecPath("/usr/bin/chromium"))
	} // else chromedp looks for Chrome or Chromium itself
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("could not start a headless Chromium (%v): run scripts/chromium.sh to install it", err)
	}
	return ctx
}

// consoleLog collects what the page writes to its console, to report at the end.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func collectConsole(ctx context.Context) *consoleLog {
	l := &consoleLog{}
	msgs := chromedp.Console(ctx) // subscribes now; ranging may start later
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, m)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *consoleLog) messages() []chromedp.ConsoleMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// browserStep runs browser actions, failing the test with what it was doing.
func browserStep(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// browserRun runs one browser action that returns a value.
func browserRun[T any](t *testing.T, ctx context.Context, what string, action chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

func browserEval[T any](t *testing.T, ctx context.Context, expression string) T {
	t.Helper()
	return browserRun(t, ctx, "evaluate "+expression, chromedp.Evaluate[T](expression))
}

// browserPoll waits until the JavaScript condition is true in the page, up to the test's deadline.
func browserPoll(t *testing.T, ctx context.Context, what, condition string) {
	t.Helper()
	// Stop a little before the test's deadline, while the browser is still there to show the page.
	timeout := waitForOutcome
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(deadline)-5*time.Second, time.Second)
	}
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](condition,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		// The page's main text (not its HTML: the seat map alone is ~40 kB) says where it got stuck.
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.querySelector("main").innerText`))
		t.Fatalf("browser: waiting for %s: %v\npage:\n%s", what, err, text)
	}
}

// screenshotDir is $BOXOFFICE_SCREENSHOTS when set, so a person can look at the pages.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BOXOFFICE_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func saveScreenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := browserRun(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	saveArtifact(t, dir, name, png)
}

func saveArtifact(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s (%d bytes)", path, len(data))
}

// openWithProbe opens a page with the probe installed.
func openWithProbe(t *testing.T, ctx context.Context, url string, visible string) {
	t.Helper()
	browserStep(t, ctx, "open "+url,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pageProbe})
			return err
		}),
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(visible)),
	)
}

// TestBrowserTwoBuyersSeeEachOthersHolds: two people have one show's seat map open in two
// browsers. Both pick C5; one books it. The other's map shows C5 held at once, without a reload,
// and tells them it has just been taken. The booker's card is declined: their page says why,
// and C5 comes free again on the other map. The other browser, a stranger to that booking,
// cannot open its page.
func TestBrowserTwoBuyersSeeEachOthersHolds(t *testing.T) {
	c := newCluster(t)
	c.start(TargetWeb)
	c.start(TargetBooking)
	// No payment service yet: the booking stays held until it starts.
	show := c.futureShow()
	shots := screenshotDir(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*browserTimeout)
	defer cancel()
	booker, other := startBrowser(t, ctx), startBrowser(t, ctx)
	for _, b := range []context.Context{booker, other} {
		openWithProbe(t, b, c.web.url+"/shows/"+show.ID, `label[for="seat-C5"]`)
		browserPoll(t, b, "the seat map's stream open", `window.__boxoffice.opened > 0`)
		browserStep(t, b, "click C5", chromedp.Click(chromedp.CSS(`label[for="seat-C5"]`), chromedp.NodeVisible))
		browserPoll(t, b, "C5 in the running total", `document.getElementById("summary").textContent.includes("C5")`)
	}

	browserStep(t, booker, "fill in the form",
		chromedp.SendKeys(chromedp.ID("name"), "Ada Lovelace", chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.ID("phone"), "07700 900123", chromedp.NodeVisible),
		chromedp.SendKeys(chromedp.ID("card_number"), cardDeclined, chromedp.NodeVisible),
	)
	booked := time.Now()
	if _, err := chromedp.RunResponse(booker, chromedp.Click(chromedp.CSS(`#booking-form button[type="submit"]`), chromedp.NodeVisible)); err != nil {
		t.Fatalf("submit the booking form: %v", err)
	}
	location := browserRun(t, booker, "read the location", chromedp.Location())
	m := regexp.MustCompile(`/bookings/([0-9a-f-]{36})\?token=`).FindStringSubmatch(location)
	if m == nil {
		t.Fatalf("after submitting, the booker is at %s, want the booking's status page", location)
	}
	bookingID := m[1]

	// The other map: C5 held and unchosen, from the stream, and the total says so.
	browserPoll(t, other, "C5 shown held on the other map", `(e => e.disabled && !e.checked
		&& e.nextElementSibling.classList.contains("held"))(document.getElementById("seat-C5"))`)
	t.Logf("the other map showed C5 held %s after Book was pressed", time.Since(booked).Round(time.Millisecond))
	browserPoll(t, other, "the other total to say C5 was taken", `document.getElementById("summary").textContent.includes("Seat C5 has just been taken")`)
	if label := browserEval[string](t, other, `document.querySelector('label[for="seat-C5"]').getAttribute("aria-label")`); label != "Row C seat 5, held by another buyer" {
		t.Errorf("C5's label reads %q to a screen reader, want it to say it is held", label)
	}
	if !browserEval[bool](t, other, `window.__boxoffice.sse.includes("seats")`) {
		t.Error("the other map changed without a seats event: it must come over the stream")
	}
	saveScreenshot(t, other, shots, "5-seat-map-with-a-hold.png")

	// The booker's page counts the hold down (from under ten minutes) while payment is pending.
	browserPoll(t, booker, "the hold's countdown", `/^[0-9]:[0-5][0-9]$/.test((document.querySelector("#hold .hold-left") || {}).textContent)`)
	first := browserEval[string](t, booker, `document.querySelector("#hold .hold-left").textContent`)
	browserPoll(t, booker, "the countdown to tick", `(e => !!e && e.textContent !== "`+first+`")(document.querySelector("#hold .hold-left"))`)
	if now := browserEval[string](t, booker, `document.querySelector("#hold .hold-left").textContent`); now >= first {
		t.Errorf("the hold countdown went from %s to %s, want it to go down", first, now)
	}
	saveScreenshot(t, booker, shots, "7-hold-countdown.png")

	// Payment starts and declines the card: the booker reads why; C5 is free again for the other.
	c.start(TargetPayment)
	c.start(TargetNotification)
	browserPoll(t, booker, "the booking to fail with the reason", `(m => m.includes("Your card was declined."))(document.querySelector("main").innerText)
		&& !!document.querySelector("#stage-failed") && !document.querySelector("#hold")`)
	saveScreenshot(t, booker, shots, "6-declined-card.png")
	browserPoll(t, other, "C5 free again on the other map", `(e => !e.disabled
		&& !e.nextElementSibling.classList.contains("taken"))(document.getElementById("seat-C5"))`)

	// A stranger to the booking: the bare booking page, and one with a forged token, are not found.
	for _, path := range []string{"/bookings/" + bookingID, "/bookings/" + bookingID + "?token=forged", "/bookings/" + bookingID + "/ticket"} {
		resp, err := chromedp.RunResponse(other, chromedp.Navigate(c.web.url+path))
		if err != nil {
			t.Fatalf("open %s: %v", path, err)
		}
		text := browserEval[string](t, other, `document.querySelector("main").innerText`)
		if resp.Status != 404 || strings.Contains(text, "Ada") || strings.Contains(text, "C5") {
			t.Errorf("a stranger opening %s: %d\n%s\nwant 404 revealing nothing", path, resp.Status, text)
		}
	}
}

// scanQR reads a QR code from an image of a page, as a phone's camera would.
func scanQR(t *testing.T, shot []byte) (string, error) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("decode the screenshot: %v", err)
	}
	bitmap, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	// TRY_HARDER, as a phone app scanning a whole printed page does: the code is a small part of it.
	result, err := zxingqr.NewQRCodeReader().Decode(bitmap, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		return "", err
	}
	return result.GetText(), nil
}

// TestBrowserReconnectMissesNothing: the web server a status page streams from goes away
// mid-booking, and the booking moves on while it is down. When the server is back the page's
// stream resumes by itself: every stage it missed arrives, in order and once, without a reload.
func TestBrowserReconnectMissesNothing(t *testing.T) {
	c := newCluster(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeTCPPorts(t, 1))
	firstWeb := c.startWith(TargetWeb, map[string]string{"HTTP_ADDR": addr})
	show := c.futureShow()
	id := c.mustBook(show.ID, []string{"G3"}, cardApproves).BookingID

	ctx, cancel := context.WithTimeout(context.Background(), 2*browserTimeout)
	defer cancel()
	ctx = startBrowser(t, ctx)
	openWithProbe(t, ctx, c.web.url+"/bookings/"+id+"?token="+c.token(id), "#progress")
	browserPoll(t, ctx, "the stream open", `window.__boxoffice.opened > 0`)
	// The booking service starts once the page is open: "Seats confirmed" comes over the stream.
	c.start(TargetBooking)
	browserPoll(t, ctx, "seats confirmed over the stream", `window.__boxoffice.sse.includes("confirmed")
		&& !!document.querySelector("#stage-confirmed.stage.done")`)
	doc := browserEval[string](t, ctx, `window.__boxoffice.doc`)
	before := browserEval[[]string](t, ctx, `window.__boxoffice.sse`)

	// The web goes away; payment, the text and the ticket happen while it is down.
	firstWeb.stop(t)
	c.web = nil
	c.start(TargetPayment)
	c.start(TargetNotification)
	c.start(TargetTicket)
	eventually(t, "the ticket issued while the web is down", func() bool {
		var n int
		_ = c.db().Get(&n, `SELECT count(*) FROM ticket.tickets WHERE booking_id = $1`, id)
		return n == 1
	})
	time.Sleep(time.Second) // the page tries to reconnect while nobody answers
	back := time.Now()
	c.startWith(TargetWeb, map[string]string{"HTTP_ADDR": addr})

	browserPoll(t, ctx, "the ticket on the page", `!!document.querySelector("#ticket [data-field=code]")`)
	t.Logf("the page showed the ticket %s after the web came back", time.Since(back).Round(time.Millisecond))
	browserPoll(t, ctx, "the stream closed after the outcome", `window.__boxoffice.closed > 0`)
	if now := browserEval[string](t, ctx, `window.__boxoffice.doc`); now != doc {
		t.Fatal("the page was reloaded: it must resume over its stream")
	}
	sse := browserEval[[]string](t, ctx, `window.__boxoffice.sse`)
	missed := sse[len(before):]
	t.Logf("stages before the web went away: %v; after it came back: %v; stream opened %d times", before,
		missed, browserEval[int](t, ctx, `window.__boxoffice.opened`))
	if want := []string{"paid", "notified", "ticketed", "outcome"}; !slices.Equal(missed, want) {
		t.Errorf("after reconnecting the page received %v, want the missed stages once and in order: %v", missed, want)
	}
	for _, name := range []string{"requested", "confirmed"} {
		n := 0
		for _, got := range sse {
			if got == name {
				n++
			}
		}
		if n > 1 {
			t.Errorf("stage %s arrived %d times over the stream %v, want at most once", name, n, sse)
		}
	}
}

// contrastCheck lists the visible text on the page whose colour contrast with its background is
// below WCAG AA (4.5:1, or 3:1 for large text). Text of disabled controls is exempt, as WCAG
// allows; text over a background image is skipped (its contrast cannot be read from styles).
const contrastCheck = `(() => {
	const parse = (c) => {
		const m = c.match(/rgba?\(([^)]+)\)/);
		if (!m) return null;
		const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
		return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
	};
	const over = (top, base) => ({r: top.r * top.a + base.r * (1 - top.a), g: top.g * top.a + base.g * (1 - top.a), b: top.b * top.a + base.b * (1 - top.a), a: 1});
	const lum = (c) => {
		const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
		return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
	};
	const background = (el) => {
		const layers = [];
		for (let e = el; e; e = e.parentElement) {
			const st = getComputedStyle(e);
			const c = parse(st.backgroundColor);
			if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
			else if (st.backgroundImage !== "none") return null;
		}
		let base = {r: 255, g: 255, b: 255, a: 1};
		for (let i = layers.length - 1; i >= 0; i--) base = over(layers[i], base);
		return base;
	};
	const failures = [];
	for (const el of document.querySelectorAll("body *")) {
		if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
		const st = getComputedStyle(el);
		const rect = el.getBoundingClientRect();
		if (st.visibility === "hidden" || rect.width < 2 || rect.height < 2 || el.closest(".visually-hidden, .skip-link, [hidden]")) continue;
		const label = el.closest("label");
		const control = label && label.htmlFor ? document.getElementById(label.htmlFor) : null;
		if ((control && control.disabled) || el.closest("button:disabled")) continue;
		const bg = background(el);
		if (!bg) continue;
		const fg = over(parse(st.color), bg);
		const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
		const ratio = (hi + 0.05) / (lo + 0.05);
		const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight, 10) >= 700;
		const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
		if (ratio < need - 0.01) failures.push(el.tagName.toLowerCase() + "." + [...el.classList].join(".") + " " + JSON.stringify(el.textContent.trim().slice(0, 30)) + " " + ratio.toFixed(2) + ":1 (needs " + need + ")");
	}
	return failures;
})()`

// axNode is one node of the page's accessibility tree, as a screen reader gets it.
type axNode struct{ Role, Name string }

func accessibilityTree(t *testing.T, ctx context.Context) []axNode {
	t.Helper()
	nodes := browserRun(t, ctx, "read the accessibility tree", func(ctx context.Context, tg *chromedp.Target) ([]axNode, error) {
		res, err := cdp.Call(ctx, tg, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
		if err != nil {
			return nil, err
		}
		var out []axNode
		for _, n := range res.Nodes {
			if n.Ignored || n.Role == nil {
				continue
			}
			var node axNode
			_ = json.Unmarshal(n.Role.Value, &node.Role)
			if n.Name != nil {
				_ = json.Unmarshal(n.Name.Value, &node.Name)
			}
			out = append(out, node)
		}
		return out, nil
	})
	return nodes
}

// TestBrowserAccessibility: the booking pages work for everyone. Seats are chosen with the
// keyboard alone and show where the focus is; every control has a name a screen reader reads;
// text meets WCAG AA contrast on every page; a phone-sized screen needs no sideways scrolling;
// and no script runs but htmx and its SSE extension.
func TestBrowserAccessibility(t *testing.T) {
	c := startAll(t)
	show := c.futureShow()
	c.waitFinal(c.mustBook(show.ID, []string{"A1"}, cardApproves).BookingID) // a sold seat on the map
	shots := screenshotDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*browserTimeout)
	defer cancel()
	ctx = startBrowser(t, ctx)
	openWithProbe(t, ctx, c.web.url+"/shows/"+show.ID, `label[for="seat-A2"]`)

	// Keyboard only: Tab to the seats (the sold A1 is skipped), Space picks, Tab moves on.
	for i := 0; i < 40 && !browserEval[bool](t, ctx, `(document.activeElement.id || "").startsWith("seat-")`); i++ {
		browserStep(t, ctx, "press Tab", chromedp.KeyEvent(kb.Tab))
	}
	if first := browserEval[string](t, ctx, `document.activeElement.id`); first != "seat-A2" {
		t.Fatalf("Tab reached %q first, want seat-A2 (A1 is sold and must be skipped)", first)
	}
	outline := browserEval[string](t, ctx, `getComputedStyle(document.querySelector('label[for="seat-A2"]')).outlineStyle`)
	if outline == "none" || outline == "" {
		t.Errorf("the focused seat's outline is %q: keyboard users cannot see where they are", outline)
	}
	browserStep(t, ctx, "Space, Tab, Space", chromedp.KeyEvent(" "), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(" "))
	browserPoll(t, ctx, "A2 and A3 in the total, chosen by keyboard", `document.getElementById("seat-A2").checked
		&& document.getElementById("seat-A3").checked && document.getElementById("summary").textContent.includes("A2, A3")`)

	// What a screen reader is given: every seat by row and number (and its state), every field by its label.
	tree := accessibilityTree(t, ctx)
	seats, names := 0, map[string]bool{}
	for _, n := range tree {
		names[n.Role+": "+n.Name] = true
		if n.Role == "checkbox" {
			seats++
			if !regexp.MustCompile(`^Row [A-L] seat \d+(, sold|, held by another buyer)?$`).MatchString(n.Name) {
				t.Errorf("a seat reads %q to a screen reader", n.Name)
			}
		}
	}
	if seats != 192 || !names["checkbox: Row A seat 1, sold"] {
		t.Errorf("the accessibility tree has %d seat checkboxes (A1 sold: %v), want 192", seats, names["checkbox: Row A seat 1, sold"])
	}
	for _, want := range []string{"textbox: Name on the booking", "textbox: Mobile number", "textbox: Card number", "button: Book and pay"} {
		if !names[want] {
			t.Errorf("no %q in the accessibility tree", want)
		}
	}

	// Contrast and phone-sized screens, page by page.
	st := c.waitFinal(c.mustBook(show.ID, []string{"B1"}, cardApproves).BookingID)
	failed := c.waitFinal(c.mustBook(show.ID, []string{"B2"}, cardDeclined).BookingID)
	pages := map[string]string{
		"whats-on":       "/",
		"movie":          "/movies/" + show.MovieID,
		"seat-map":       "/shows/" + show.ID,
		"booking":        "/bookings/" + st.BookingID + "?token=" + c.token(st.BookingID),
		"booking-failed": "/bookings/" + failed.BookingID + "?token=" + c.token(failed.BookingID),
		"ticket":         "/bookings/" + st.BookingID + "/ticket?token=" + c.token(st.BookingID),
		"door":           "/tickets/verify?code=" + url.QueryEscape(st.TicketCode),
		"sms-inbox":      "/dev/sms",
	}
	for _, name := range slices.Sorted(maps.Keys(pages)) {
		for _, phone := range []bool{false, true} {
			width, height := int64(1280), int64(1000)
			if phone {
				width, height = 375, 740
			}
			browserStep(t, ctx, "size the window", chromedp.EmulateViewport(width, height))
			openWithProbe(t, ctx, c.web.url+pages[name], "main")
			if failures := browserEval[[]string](t, ctx, contrastCheck); len(failures) > 0 {
				t.Errorf("%s at %dpx: text below WCAG AA contrast:\n%s", name, width, strings.Join(failures, "\n"))
			}
			if overflow := browserEval[int](t, ctx, `document.scrollingElement.scrollWidth - window.innerWidth`); overflow > 0 {
				t.Errorf("%s at %dpx is %dpx too wide: it scrolls sideways", name, width, overflow)
			}
			scripts := browserEval[[]string](t, ctx, `[...document.scripts].map((s) => s.src ? new URL(s.src).pathname : "inline")`)
			if !slices.Equal(scripts, []string{"/static/htmx-2.0.11.min.js", "/static/htmx-ext-sse-2.2.4.min.js"}) && !(name == "ticket" && len(scripts) == 0) {
				t.Errorf("%s runs scripts %v, want only htmx and its SSE extension", name, scripts)
			}
			if phone && (name == "seat-map" || name == "booking") {
				saveScreenshot(t, ctx, shots, "9-phone-"+name+".png")
			}
		}
	}
}

// rasterizePDF renders a PDF's first page to a PNG at dpi with poppler's pdftoppm, which
// scripts/chromium.sh installs beside Chromium.
func rasterizePDF(t *testing.T, pdf string, dpi int) []byte {
	t.Helper()
	if _, err := exec.LookPath("pdftoppm"); err != nil {
		t.Fatal("pdftoppm is not installed: run scripts/chromium.sh (Debian's poppler-utils)")
	}
	out := filepath.Join(t.TempDir(), "page")
	if b, err := exec.Command("pdftoppm", "-r", strconv.Itoa(dpi), "-png", "-singlefile", "-f", "1", "-l", "1", pdf, out).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm %s: %v\n%s", pdf, err, b)
	}
	png, err := os.ReadFile(out + ".png")
	if err != nil {
		t.Fatal(err)
	}
	return png
}
