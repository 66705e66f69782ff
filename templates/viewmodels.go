// Package templates holds Boxoffice's pages and fragments (templ components) and the view
// models they render: plain structs shaped like the screen, filled by the web handlers. The
// components never query anything; everything they show is in their view model.
package templates

// MovieCard is one film on the "What's on" page.
type MovieCard struct {
	ID        string
	Title     string
	Tagline   string
	Synopsis  string
	Runtime   string // "1 h 58 min"
	AgeRating string // "12A"
	Genre     string
	PosterHue int // 0-359: the drawn poster's colour
}

// MoviesPage is the home page: the programme.
type MoviesPage struct {
	Movies []MovieCard
}

// DayTab is one day of the week on a movie page.
type DayTab struct {
	Label    string // "Today", "Tomorrow", "Fri 27 Nov"
	Date     string // "2026-11-27", the ?day= value
	URL      string
	Selected bool
}

// ShowTime is one bookable screening as a button.
type ShowTime struct {
	ShowID    string
	URL       string
	Time      string // "19:30"
	Screen    string // "Screen 2"
	Price     string // "£13.95"
	SeatsLeft int
	SoldOut   bool
	Started   bool
}

// TheatreShowtimes groups a day's showtimes by cinema.
type TheatreShowtimes struct {
	TheatreName string
	Location    string // street address and city
	Times       []ShowTime
}

// MoviePage is one film with its showtimes by theatre for the selected day.
type MoviePage struct {
	Movie    MovieCard
	Days     []DayTab
	DayLabel string
	Theatres []TheatreShowtimes // empty: nothing on that day
}

// SeatView is one seat on the map.
type SeatView struct {
	Row      string // "F"
	Label    string // "F7"
	Number   int
	Taken    bool // held or sold: it cannot be chosen
	Held     bool // taken by a booking still being paid for; it may come free again
	Selected bool
	Column   int // 1-based grid column, counting aisles
}

// SeatRow is one lettered row of the map.
type SeatRow struct {
	Label string // "F"
	Seats []SeatView
}

// BookingForm is what the person typed, echoed back with errors when it did not validate.
type BookingForm struct {
	Name        string
	Phone       string
	CardNumber  string
	Errors      map[string]string // field ("seats", "name", "phone", "card_number", "show_id") → message
	FormMessage string            // an error about the whole form
}

// ShowSummary is the running total next to the seat map.
type ShowSummary struct {
	Seats []string
	Price string // per seat
	Total string
	// JustTaken are seats this person had chosen that someone else has just taken.
	JustTaken []string
}

// ShowPage is the seat map and booking form for one screening.
type ShowPage struct {
	ShowID      string
	MovieID     string
	MovieTitle  string
	AgeRating   string
	TheatreName string
	Location    string
	Screen      string // "Screen 2"
	When        string // "Friday 27 November, 19:30"
	Price       string // per seat
	Started     bool   // the show has begun: the map is shown but cannot be booked
	Rows        []SeatRow
	Columns     int // grid columns the widest row needs
	// SeatsURL streams the map's changes from the version it was rendered at.
	SeatsURL  string
	MaxSeats  int
	Summary   ShowSummary
	Form      BookingForm
	TestCards string // the sandbox's test-card hint
	// IdempotencyKey is fresh for each page: pressing Book twice sends it twice and books once.
	IdempotencyKey string
}

// StageView is one line of a booking's progress.
type StageView struct {
	Name   string // requested, confirmed, paid, notified, ticketed, rejected, failed
	Title  string // "Seats confirmed"
	Detail string
	At     string // "19:02:11"
	State  string // "done", "pending", "failed"
}

// TicketView is every field the ticket shows.
type TicketView struct {
	TicketID        string
	Code            string
	MovieTitle      string
	TheatreName     string
	TheatreLocation string
	Date            string // "Friday 27 November 2026"
	Time            string // "19:30"
	Screen          string // "Screen 2"
	Seats           string // "F7, F8"
	BookedUnder     string
	Price           string
	PrintURL        string
	SignedCode      string // what the QR code encodes: the ticket id, signed; never personal data
	QRSize          int    // modules a side, quiet zone included: the SVG's viewBox
	QRPath          string // the dark modules, as one SVG path
}

// Progress is the changing part of the booking status page: the stages, and how it ended.
type Progress struct {
	Status   string // the API status
	Final    bool
	Stages   []StageView
	Failed   bool   // rejected or failed
	Reason   string // why it failed, for people
	RetryURL string // pick other seats
	Ticket   *TicketView
	Hold     *HoldView // while the seats are held and payment is pending
}

// HoldView counts down a seat hold on the status page; it asks the server again every second.
type HoldView struct {
	URL     string // this fragment again, with the booking's token
	Until   string // "16:45:03", in the theatre's time
	Left    string // "9:41"; empty before the first tick
	Expired bool   // the hold has run out; the booking's end is on its way
	Active  bool   // still worth asking again
}

// BookingPage is the status page of one booking.
type BookingPage struct {
	BookingID   string
	MovieTitle  string
	TheatreName string
	When        string
	Screen      string
	Seats       string
	BookedUnder string
	EventsURL   string // the HTML SSE stream; empty once the booking has ended
	Progress    Progress
}

// SMSMessage is one text in the sandbox inbox.
type SMSMessage struct {
	Phone  string
	Body   string
	SentAt string
	Ago    string
}

// SMSInboxPage is the sandbox SMS provider's inbox.
type SMSInboxPage struct {
	Messages []SMSMessage
	Phone    string // filter, "" for all
	Everyone bool   // staff see every text; anyone else the texts of their own bookings
}

// ErrorPage explains what went wrong, with a way back.
type ErrorPage struct {
	Status  int
	Title   string
	Message string
}

// OpsPage is the operations view: the broker's, the consumer groups' and the outboxes' state.
type OpsPage struct {
	AsOf        string
	Groups      []OpsGroup
	Topics      []OpsTopic
	DeadLetters []OpsTopic
	Outboxes    []OpsOutbox
	Errors      []string
}

// OpsGroup is one consumer group; Partitions lists "topic/partition committed/end (lag)".
type OpsGroup struct {
	Name       string
	Members    int
	Lag        int64
	Partitions []OpsPartition
}

// OpsPartition is where a group stands on one partition.
type OpsPartition struct {
	Topic     string
	Partition int
	Committed string
	End       int64
	Lag       int64
}

// OpsTopic is a topic's end offsets, by partition.
type OpsTopic struct {
	Name  string
	Ends  []int64
	Total int64
}

// OpsOutbox is one service's unpublished backlog.
type OpsOutbox struct {
	Table   string
	Pending int
	Oldest  string
}

// MyBookingsPage lists the bookings made from this browser, newest first.
type MyBookingsPage struct {
	Bookings []MyBooking
}

// MyBooking is one line of "My bookings".
type MyBooking struct {
	URL         string // the booking's page, with its token
	MovieTitle  string
	TheatreName string
	When        string
	Seats       string
	Status      string
	StatusTitle string
}

// VerifyPage is the cinema door's ticket check.
type VerifyPage struct {
	DoorStaff bool          // this device is signed in as door staff: it may admit
	Code      string        // as scanned or typed
	Error     string        // the code is not a valid ticket
	Result    *VerifyResult // a valid ticket
}

// VerifyResult is a valid ticket as the door sees it: the show and seats, never the buyer.
type VerifyResult struct {
	Movie           string
	Theatre         string
	Screen          string
	When            string
	Seats           string
	Code            string // the short code printed on the ticket, to compare
	AdmittedNow     bool   // this request admitted it
	AlreadyAdmitted bool   // it had been admitted before
	AdmittedAt      string
	AnotherDay      bool // the show is not today
}

// DoorSignIn is the door staff's sign-in page.
type DoorSignIn struct {
	SignedIn bool
	Error    string
}
