package web

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// Booking statuses, as the API reports them. The first five are the happy path in order;
// rejected and failed end a booking early.
const (
	StatusRequested = "requested"
	StatusConfirmed = "confirmed"
	StatusPaid      = "paid"
	StatusNotified  = "notified"
	StatusTicketed  = "ticketed"
	StatusRejected  = "rejected"
	StatusFailed    = "failed"
)

// statusRank orders statuses so a late or replayed event never moves a booking backwards.
var statusRank = map[string]int{
	StatusRequested: 0, StatusConfirmed: 1, StatusPaid: 2, StatusNotified: 3, StatusTicketed: 4,
	StatusRejected: 10, StatusFailed: 10,
}

// IsFinal reports whether a status ends the booking.
func IsFinal(status string) bool {
	return status == StatusTicketed || status == StatusRejected || status == StatusFailed
}

// Stage is one step a booking went through, as the status page and the API show it.
type Stage struct {
	Name   string    `db:"name" json:"name"`
	At     time.Time `db:"at" json:"at"`
	Detail string    `db:"detail" json:"detail"`
	code   string    // the rejection or failure code, for /metrics; not stored
	// holdUntil is when the seats' hold runs out, told by the seats-confirmed stage.
	holdUntil time.Time
}

// BookingStatus is the web's view of one booking: the truth the status page renders on load.
type BookingStatus struct {
	Token        string              `db:"-"` // its capability token, for the links a page shows; not stored
	TicketCode   string              `db:"-"` // its ticket's signed code, for the QR code; not stored
	ID           string              `db:"id"`
	ShowID       string              `db:"show_id"`
	Seats        pq.StringArray      `db:"seats"`
	CustomerName string              `db:"customer_name"`
	PhoneMasked  string              `db:"phone_masked"`
	CardBrand    string              `db:"card_brand"`
	CardLast4    string              `db:"card_last4"`
	Status       string              `db:"status"`
	Reason       string              `db:"reason"`
	TicketJSON   []byte              `db:"ticket"`
	CreatedAt    time.Time           `db:"created_at"`
	HoldUntil    *time.Time          `db:"hold_expires_at"` // while confirmed: when the hold runs out
	Ticket       *event.TicketIssued `db:"-"`
	Stages       []Stage             `db:"-"`
}

// ErrBookingNotFound is returned for an unknown booking id.
var ErrBookingNotFound = errors.New("booking not found")

// Projection keeps the web's booking-status table from the five topics and tells the SSE hub
// whenever a booking gains a stage.
type Projection struct {
	db       *sqlx.DB
	recorder *recorder
	onChange func(showID string, change *StageNews)
	relay    *outbox.Relay
	metrics  *metrics // nil: not measured
	log      *slog.Logger
	// recordedHere holds the bookings this process recorded and queued for booking-movie,
	// until its own projection reads them back (see onRequestedBatch).
	recordedHere recentIDs
	// backlog follows the bookings this replica took to their outcome, and refuses presses while
	// too many are overdue (nil: never).
	backlog *backlog
}

// recentIDs is a set of booking ids, bounded: past its limit it starts again empty, which only
// costs the statements it was saving.
type recentIDs struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

const recentIDsLimit = 50_000

func (r *recentIDs) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil || len(r.ids) >= recentIDsLimit {
		r.ids = make(map[string]struct{})
	}
	r.ids[id] = struct{}{}
}

func (r *recentIDs) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	return ok
}

func (r *recentIDs) forget(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		delete(r.ids, id)
	}
}

// OutboxTable is where the web queues the booking requests it publishes.
const OutboxTable = "web.outbox"

// NewProjection returns the projection. onChange is called after each stage is stored, with the
// stage as news its streams can apply without reading the booking again, and with nil news for a
// new booking (its streams read it when they connect, but its show's seat maps have changed);
// relay is handed each booking request queued, once committed (its fast lane).
func NewProjection(db *sqlx.DB, onChange func(showID string, change *StageNews), relay *outbox.Relay, log *slog.Logger) *Projection {
	p := &Projection{db: db, onChange: onChange, relay: relay, log: log}
	p.recorder = &recorder{store: p.recordMany, single: func(ctx context.Context, rec *recording) (bool, error) {
		recorded, err := p.recordMany(ctx, []*recording{rec})
		return err == nil && recorded[0], err
	}}
	return p
}

// ResetProjection empties the booking-status table and its stages, for a rebuild from the topics
// (`boxoffice -target=replay rebuild-web`). Idempotency claims and the outbox stay: they are
// not built from the topics.
func ResetProjection(ctx context.Context, conn *sqlx.DB) error {
	if _, err := conn.ExecContext(ctx, `TRUNCATE web.booking_stages, web.bookings`); err != nil {
		return fmt.Errorf("reset the web projection: %w", err)
	}
	return nil
}

// ProjectionSubscriptions are what a web replica reads into its booking-status table: the
// requests, then every later stage.
func ProjectionSubscriptions(instance string) []kafka.Subscription {
	return []kafka.Subscription{
		{Group: "web-" + instance + "-requests", Topics: []string{event.TopicBookingMovie}},
		{Group: "web-" + instance, Topics: []string{event.TopicMovieFound, event.TopicPayment, event.TopicNotificationSent, event.TopicTicketDetails}},
	}
}

// Consumers read all five topics. Every web replica must see every event (its browsers may be
// connected to any replica), so each replica has consumer groups of its own. Requests get a
// reader of their own: a later stage whose booking has not been read yet is retried in place,
// and that must never stop the requests from being read.
func (p *Projection) Consumers(cluster kafka.Cluster, instance string, pub *kafka.Publisher) []*kafka.Consumer {
	subs := ProjectionSubscriptions(instance)
	requests := kafka.NewConsumer(kafka.ConsumerConfig{
		Cluster: cluster, GroupID: subs[0].Group, Topics: subs[0].Topics,
		Batch: map[string]kafka.BatchHandler{event.TopicBookingMovie: p.onRequestedBatch},
	}, kafka.Handlers{event.TypeBookingRequested: kafka.On(p.onRequested)}, pub, p.log)
	handlers := kafka.Handlers{}
	for eventType, read := range stageChanges {
		handlers[eventType] = func(ctx context.Context, env event.Envelope) error {
			change, err := read(env)
			if err != nil {
				return err
			}
			return p.advanceStages(ctx, []stageChange{change})
		}
	}
	batches := map[string]kafka.BatchHandler{}
	for _, topic := range subs[1].Topics {
		batches[topic] = p.onStagesBatch
	}
	stages := kafka.NewConsumer(kafka.ConsumerConfig{
		Cluster: cluster, GroupID: subs[1].Group, Topics: subs[1].Topics, Batch: batches,
	}, handlers, pub, p.log)
	return []*kafka.Consumer{requests, stages}
}

// RequestClaim ties a booking request to the client's idempotency key.
type RequestClaim struct {
	Key  string
	Hash string // of the request, so a key reused for another request is told apart
}

// errKeyReused means an idempotency key arrived again with a different request.
var errKeyReused = errors.New("idempotency key reused for a different request")

// Record stores a new booking as requested, with its first stage, in one statement (so one
// round trip and one transaction: it is on the path of every Book press). When a person presses
// Book it is called with publish set: the booking-movie event is queued in the outbox in the same
// statement, so the request is published if and only if it was recorded. With a claim, it first
// claims the idempotency key: if the key was already used for the same request it records
// nothing and returns that booking's id; for another request, errKeyReused.
//
// Book presses that arrive while others are being recorded are recorded together, in one
// statement (see recorder): a rush of buyers then costs a few commits, not one each.
func (p *Projection) Record(ctx context.Context, env event.Envelope, req event.BookingRequested, phoneMasked string, claim *RequestClaim, publish bool) (existing string, err error) {
	rec := &recording{env: env, req: req, phoneMasked: phoneMasked, publish: publish, done: make(chan recordOutcome, 1)}
	if claim != nil {
		rec.key, rec.hash = claim.Key, claim.Hash
	}
	if publish {
		rec.event = outbox.Stamp(ctx, env)
		if rec.envelope, err = json.Marshal(rec.event); err != nil {
			return "", fmt.Errorf("encode booking %s: %w", env.BookingID, err)
		}
	}
	if publish {
		if err := p.backlog.admit(); err != nil {
			p.metrics.refusedBusy()
			return "", err
		}
		// Followed from before its statement: its outcome may be stored before this call
		// returns (a rejection is one hop), and must find it followed, not be followed after.
		p.backlog.taken(env.BookingID)
	}
	recorded, err := p.recorder.record(ctx, rec)
	if err != nil || !recorded {
		p.backlog.dropped(env.BookingID) // not taken after all: not stored, or its key's first booking answers
	}
	if err != nil {
		return "", fmt.Errorf("record booking %s: %w", env.BookingID, err)
	}
	if !recorded {
		var first struct {
			Hash      string `db:"request_hash"`
			BookingID string `db:"booking_id"`
		}
		if err := p.db.GetContext(ctx, &first, `SELECT request_hash, booking_id FROM web.booking_requests
			WHERE idempotency_key = $1`, rec.key); err != nil {
			return "", fmt.Errorf("read idempotency key: %w", err)
		}
		if first.Hash != rec.hash {
			return "", errKeyReused
		}
		return first.BookingID, nil
	}
	if publish {
		p.recordedHere.add(env.BookingID) // its booking-movie event went to the relay's fast lane
	}
	p.onChange(req.ShowID, nil) // a new booking: only its show's seat maps have anything to hear
	return "", nil
}

// recording is one Record waiting to be stored.
type recording struct {
	ctx         context.Context // the caller's: once it ends, the press is not stored
	env         event.Envelope
	req         event.BookingRequested
	phoneMasked string
	key, hash   string         // the idempotency claim, if any
	envelope    []byte         // the booking-movie event for the outbox, if publish
	event       event.Envelope // the same, for the relay's fast lane
	publish     bool
	done        chan recordOutcome
}

type recordOutcome struct {
	recorded bool // false: the claim's key was taken (by an earlier request, or one in the batch)
	err      error
}

// recorder stores Records the way PostgreSQL commits: whatever arrives while statements are
// in flight waits, and goes in the next statement, together. Alone, a Record is stored at once,
// as before; at 2,000 Book presses a second, each of them one statement and one commit kept
// the buyers waiting on the database pool for seconds. No goroutine outlives the queue: the
// caller that finds a free slot starts one that stores batches until none is waiting.
//
// A caller is told the truth: a press whose caller has gone away before its statement is
// dropped and never stored; one whose statement has started is waited for, within
// recordTimeout for its whole turn, however the caller's context ends.
type recorder struct {
	mu      sync.Mutex
	pending []*recording
	running int // statements in flight, at most recordersAtOnce
	store   func(ctx context.Context, batch []*recording) ([]bool, error)
	single  func(ctx context.Context, rec *recording) (bool, error)
}

const (
	recordersAtOnce = 2
	maxRecordBatch  = 200
	// maxPendingRecords turns presses away (503, "try again") rather than queue them for
	// longer than buyers wait: at the hot show's rate a batch takes milliseconds.
	maxPendingRecords = 5000
	recordTimeout     = 10 * time.Second // one turn: a batch, and its presses one by one if it fails
)

// errRecorderBusy refuses a press when too many are waiting to be stored.
var errRecorderBusy = errors.New("too many bookings waiting to be stored")

// record queues rec and waits for it to be stored.
func (r *recorder) record(ctx context.Context, rec *recording) (bool, error) {
	rec.ctx = ctx
	r.mu.Lock()
	if len(r.pending) >= maxPendingRecords {
		r.mu.Unlock()
		return false, errRecorderBusy
	}
	r.pending = append(r.pending, rec)
	if r.running < recordersAtOnce {
		r.running++
		go r.flush()
	}
	r.mu.Unlock()
	select {
	case out := <-rec.done:
		return out.recorded, out.err
	case <-ctx.Done():
	}
	r.mu.Lock()
	if i := slices.Index(r.pending, rec); i >= 0 {
		r.pending = slices.Delete(r.pending, i, i+1)
		r.mu.Unlock()
		return false, ctx.Err() // never stored
	}
	r.mu.Unlock()
	out := <-rec.done // its statement has started: wait for what it did
	return out.recorded, out.err
}

func (r *recorder) flush() {
	for {
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.running--
			r.mu.Unlock()
			return
		}
		n := min(len(r.pending), maxRecordBatch)
		taken := make([]*recording, n)
		copy(taken, r.pending)
		r.pending = slices.Delete(r.pending, 0, n)
		r.mu.Unlock()

		batch := taken[:0]
		for _, rec := range taken {
			if err := rec.ctx.Err(); err != nil {
				rec.done <- recordOutcome{err: err} // gone before its statement: not stored
				continue
			}
			batch = append(batch, rec)
		}
		ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
		if len(batch) > 1 {
			if recorded, err := r.store(ctx, batch); err == nil {
				for i, rec := range batch {
					rec.done <- recordOutcome{recorded: recorded[i]}
				}
				cancel()
				continue
			}
			// One bad request must not fail the others: each is stored on its own instead,
			// within what is left of the turn.
		}
		for _, rec := range batch {
			var out recordOutcome
			if out.err = ctx.Err(); out.err == nil {
				out.recorded, out.err = r.single(ctx, rec)
			}
			rec.done <- out
		}
		cancel()
	}
}

// recordedRow is a recording as recordMany hands it to PostgreSQL.
type recordedRow struct {
	requestedRow
	N        int             `json:"n"`
	Key      string          `json:"key"`
	Hash     string          `json:"hash"`
	Envelope json.RawMessage `json:"envelope,omitempty"`
}

// recordMany stores Records in one statement: each request goes on only if it has no key or
// claimed its key itself (two requests of a batch with one key: the first claims it). A
// concurrent request with the same key waits at the claim until the first one commits. A stage
// is stored only beside its booking's row (stages have no foreign key: migration 00015). The
// events are keyed by show: one show's seat decisions are made in order.
func (p *Projection) recordMany(ctx context.Context, batch []*recording) ([]bool, error) {
	rows := make([]recordedRow, len(batch))
	for i, rec := range batch {
		rows[i] = recordedRow{requestedRow: newRequestedRow(rec.env, rec.req, rec.phoneMasked), N: i, Key: rec.key, Hash: rec.hash}
		if rec.publish {
			rows[i].Envelope = rec.envelope
		}
	}
	raw, err := json.Marshal(rows)
	if err != nil {
		return nil, fmt.Errorf("encode %d bookings: %w", len(rows), err)
	}
	// The recordings that went on, each with its booking-movie event's outbox row if it has one.
	var proceeded []struct {
		N      int           `db:"n"`
		Queued sql.NullInt64 `db:"queued"`
	}
	if err := prepared.Select(ctx, p.db, &proceeded, `WITH r AS (
			SELECT * FROM jsonb_to_recordset($1::jsonb) AS r (n int, id uuid, show_id text, seats text[], customer_name text,
				phone_masked text, card_brand text, card_last4 text, at timestamptz, key text, hash text, detail text,
				event_id text, envelope jsonb)
		), claim AS (
			INSERT INTO web.booking_requests (idempotency_key, request_hash, booking_id)
			SELECT key, hash, id FROM r WHERE key <> '' ORDER BY n
			ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, booking_id
		), proceed AS (
			SELECT r.* FROM r WHERE r.key = '' OR (r.key, r.id) IN (SELECT idempotency_key, booking_id FROM claim)
		), booking AS (
			INSERT INTO web.bookings
				(id, show_id, seats, customer_name, phone_masked, card_brand, card_last4, status, created_at, updated_at)
			SELECT id, show_id, seats, customer_name, phone_masked, card_brand, card_last4, $2, at, now() FROM proceed
			ON CONFLICT (id) DO NOTHING
		), stage AS (
			INSERT INTO web.booking_stages (booking_id, name, at, detail, event_id)
			SELECT id, $2, at, detail, event_id FROM proceed ON CONFLICT (booking_id, name) DO NOTHING
		), queued AS (
			INSERT INTO `+OutboxTable+` (topic, key, envelope)
			SELECT $3, show_id, envelope FROM proceed WHERE envelope IS NOT NULL ORDER BY n
			RETURNING id, envelope->>'event_id' AS event_id
		)
		SELECT p.n, q.id AS queued FROM proceed p LEFT JOIN queued q ON q.event_id = p.envelope->>'event_id'
		ORDER BY q.id`, string(raw), StatusRequested, event.TopicBookingMovie); err != nil {
		return nil, fmt.Errorf("record %d bookings: %w", len(batch), err)
	}
	recorded := make([]bool, len(batch))
	var queuedIDs []int64
	var queued []kafka.Message
	for _, r := range proceeded {
		recorded[r.N] = true
		if r.Queued.Valid {
			rec := batch[r.N]
			queuedIDs = append(queuedIDs, r.Queued.Int64)
			queued = append(queued, kafka.Message{Topic: event.TopicBookingMovie, Key: rec.req.ShowID, Envelope: rec.event})
		}
	}
	if len(queued) > 0 {
		p.relay.Committed(queuedIDs, queued)
	}
	return recorded, nil
}

// onRequested records a booking read from booking-movie. It is usually recorded already, by
// this web process when the person pressed Book: then it was stored and its show's seat maps
// told in that statement, and reading it back costs nothing (a round trip per booking that
// changed nothing, before). A replay, or another replica's booking, is recorded.
func (p *Projection) onRequested(ctx context.Context, env event.Envelope, req event.BookingRequested) error {
	if p.recordedHere.has(env.BookingID) {
		p.recordedHere.forget(env.BookingID)
		return nil
	}
	return p.recordRequested(ctx, []event.Envelope{env}, []event.BookingRequested{req})
}

// onRequestedBatch is onRequested for the requests fetched together.
func (p *Projection) onRequestedBatch(ctx context.Context, batch []kafka.Delivery) error {
	envs := make([]event.Envelope, 0, len(batch))
	reqs := make([]event.BookingRequested, 0, len(batch))
	var recordedHere []string // forgotten only once the batch succeeds: a refused one is handled one by one
	for _, d := range batch {
		if d.Envelope.Type != event.TypeBookingRequested {
			return fmt.Errorf("%w: a %s event", errNotBatchable, d.Envelope.Type)
		}
		if p.recordedHere.has(d.Envelope.BookingID) {
			recordedHere = append(recordedHere, d.Envelope.BookingID)
			continue
		}
		var req event.BookingRequested
		if err := d.Envelope.Decode(&req); err != nil {
			return err
		}
		envs, reqs = append(envs, d.Envelope), append(reqs, req)
	}
	if len(envs) > 0 {
		if err := p.recordRequested(ctx, envs, reqs); err != nil {
			return err
		}
	}
	p.recordedHere.forget(recordedHere...)
	return nil
}

// requestedRow is a booking request as recordRequested hands it to PostgreSQL.
type requestedRow struct {
	ID           string    `json:"id"`
	ShowID       string    `json:"show_id"`
	Seats        []string  `json:"seats"`
	CustomerName string    `json:"customer_name"`
	PhoneMasked  string    `json:"phone_masked"`
	CardBrand    string    `json:"card_brand"`
	CardLast4    string    `json:"card_last4"`
	At           time.Time `json:"at"`
	Detail       string    `json:"detail"`
	EventID      string    `json:"event_id"`
}

// newRequestedRow is a booking as it is first stored, with its requested stage.
func newRequestedRow(env event.Envelope, req event.BookingRequested, phoneMasked string) requestedRow {
	seats := req.Seats
	if seats == nil {
		seats = []string{}
	}
	return requestedRow{ID: env.BookingID, ShowID: req.ShowID, Seats: seats, CustomerName: req.CustomerName,
		PhoneMasked: phoneMasked, CardBrand: req.Card.Brand, CardLast4: req.Card.Last4,
		At: env.OccurredAt, Detail: seatsRequested(req.Seats), EventID: env.ID}
}

// recordRequested records bookings read from booking-movie, with their first stage, in one
// statement (one round trip, its own transaction), since it runs for every booking; each stage
// is stored beside its booking's row. A booking id seen twice keeps its first record, as one by
// one.
func (p *Projection) recordRequested(ctx context.Context, envs []event.Envelope, reqs []event.BookingRequested) error {
	rows := make([]requestedRow, len(envs))
	for i, env := range envs {
		rows[i] = newRequestedRow(env, reqs[i], event.MaskPhone(reqs[i].Phone))
	}
	raw, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("encode %d bookings: %w", len(rows), err)
	}
	if _, err := prepared.Exec(ctx, p.db, `WITH requested AS (
			SELECT * FROM jsonb_to_recordset($1::jsonb) AS r (id uuid, show_id text, seats text[], customer_name text,
				phone_masked text, card_brand text, card_last4 text, at timestamptz, detail text, event_id text)
		), booking AS (
			INSERT INTO web.bookings
				(id, show_id, seats, customer_name, phone_masked, card_brand, card_last4, status, created_at, updated_at)
			SELECT id, show_id, seats, customer_name, phone_masked, card_brand, card_last4, $2, at, now() FROM requested
			ON CONFLICT (id) DO NOTHING
		)
		INSERT INTO web.booking_stages (booking_id, name, at, detail, event_id)
		SELECT id, $2, at, detail, event_id FROM requested ON CONFLICT (booking_id, name) DO NOTHING`,
		string(raw), StatusRequested); err != nil {
		return fmt.Errorf("record %d bookings: %w", len(rows), err)
	}
	// Told even when nothing was new: another replica sharing the database may have recorded
	// it, and the seat maps connected here must follow all the same. A new booking's own streams
	// have nothing to hear: one can only connect once the booking is stored, and reads it then.
	for _, req := range reqs {
		p.onChange(req.ShowID, nil)
	}
	return nil
}

// stageChange is what one event does to a booking in the projection: a stage to store once,
// and a status to move to (never backwards).
type stageChange struct {
	env    event.Envelope
	stage  Stage
	status string
	reason string
	ticket *event.TicketIssued
}

// stageChanges reads each event type of the later stages into its change.
var stageChanges = map[string]func(event.Envelope) (stageChange, error){
	event.TypeSeatsConfirmed:     changeFrom(confirmedChange),
	event.TypeBookingRejected:    changeFrom(rejectedChange),
	event.TypePaymentSucceeded:   changeFrom(paidChange),
	event.TypePaymentFailed:      changeFrom(paymentFailedChange),
	event.TypeNotificationSent:   changeFrom(notificationChange),
	event.TypeNotificationFailed: changeFrom(notificationChange),
	event.TypeTicketIssued:       changeFrom(ticketChange),
}

func changeFrom[T any](change func(event.Envelope, T) stageChange) func(event.Envelope) (stageChange, error) {
	return func(env event.Envelope) (stageChange, error) {
		var payload T
		if err := env.Decode(&payload); err != nil {
			return stageChange{}, err
		}
		return change(env, payload), nil
	}
}

// simpleChange is a stage named after the status it moves to.
func simpleChange(env event.Envelope, status, detail string) stageChange {
	return stageChange{env: env, stage: Stage{Name: status, At: asStored(env.OccurredAt), Detail: detail}, status: status}
}

// asStored is a time as PostgreSQL keeps it, to the microsecond, in UTC. Times are cut to that
// before they are stored (PostgreSQL would round them its own way), so what the streams are told
// (StageNews) is to the digit what a read gives.
func asStored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func confirmedChange(env event.Envelope, c event.SeatsConfirmed) stageChange {
	held := "held"
	if !c.HoldExpiresAt.IsZero() {
		// In the theatre's time, like the show: the customer is there or on their way.
		held = "held until " + event.InZone(c.HoldExpiresAt, c.Booking.Timezone).Format("15:04:05")
	}
	detail := fmt.Sprintf("Seats %s %s · %s to pay", joinSeats(c.Booking.Seats), held, formatMoney(c.Booking.AmountCents, c.Booking.Currency))
	change := simpleChange(env, StatusConfirmed, detail)
	change.stage.holdUntil = asStored(c.HoldExpiresAt)
	return change
}

func rejectedChange(env event.Envelope, r event.BookingRejected) stageChange {
	change := simpleChange(env, StatusRejected, r.Reason)
	change.stage.code, change.reason = r.Code, r.Reason
	return change
}

func paidChange(env event.Envelope, ps event.PaymentSucceeded) stageChange {
	return simpleChange(env, StatusPaid, fmt.Sprintf("%s charged to %s ending %s",
		formatMoney(ps.Booking.AmountCents, ps.Booking.Currency), brandName(ps.CardBrand), ps.CardLast4))
}

func paymentFailedChange(env event.Envelope, pf event.PaymentFailed) stageChange {
	change := simpleChange(env, StatusFailed, fmt.Sprintf("%s (%s ending %s). %s", pf.Reason, brandName(pf.CardBrand), pf.CardLast4, pf.Consequence()))
	change.stage.code, change.reason = pf.Code, pf.Reason
	return change
}

func notificationChange(env event.Envelope, n event.NotificationResult) stageChange {
	detail := "Text message sent to " + n.Booking.PhoneMasked
	if n.Error != "" {
		detail = "Text message could not be sent: " + n.Error
	}
	change := simpleChange(env, StatusNotified, detail)
	if !n.Paid {
		// The SMS about a failed payment adds a stage, not a status: "failed" (and its reason)
		// comes from the payment-failed event, which may be read after this one.
		change.status = StatusRequested
	}
	return change
}

func ticketChange(env event.Envelope, t event.TicketIssued) stageChange {
	change := simpleChange(env, StatusTicketed, fmt.Sprintf("Ticket %s issued", t.Code))
	change.ticket = &t
	return change
}

// errBookingNotYetKnown is transient: the booking-movie event that creates the row is on another
// topic and may not have been read yet.
var errBookingNotYetKnown = errors.New("booking not yet known to the web projection")

// errNotBatchable sends a batch down the careful path, one event at a time.
var errNotBatchable = errors.New("not for a bulk update")

// onStagesBatch stores the stage events of one topic fetched together in one statement: the
// projection reads every stage of every booking, the most events of any consumer. If a booking
// is not known yet, nothing is stored, and the consumer handles the events one at a time, so the
// one that must wait waits alone.
func (p *Projection) onStagesBatch(ctx context.Context, batch []kafka.Delivery) error {
	changes := make([]stageChange, 0, len(batch))
	for _, d := range batch {
		read, ok := stageChanges[d.Envelope.Type]
		if !ok {
			return fmt.Errorf("%w: a %s event", errNotBatchable, d.Envelope.Type)
		}
		if slices.ContainsFunc(changes, func(c stageChange) bool { return c.env.BookingID == d.Envelope.BookingID }) {
			return fmt.Errorf("%w: booking %s twice", errNotBatchable, d.Envelope.BookingID)
		}
		change, err := read(d.Envelope)
		if err != nil {
			return err
		}
		changes = append(changes, change)
	}
	return p.advanceStages(ctx, changes)
}

// stageRow is a stageChange as advanceStages hands it to PostgreSQL.
type stageRow struct {
	N         int                 `json:"n"` // its place: the rows come back in this order
	BookingID string              `json:"booking_id"`
	Name      string              `json:"name"`
	At        time.Time           `json:"at"`
	Detail    string              `json:"detail"`
	EventID   string              `json:"event_id"`
	Status    string              `json:"new_status"`
	Rank      int                 `json:"new_rank"`
	SeatState SeatState           `json:"new_seat_state"`
	Reason    string              `json:"new_reason"`
	Ticket    *event.TicketIssued `json:"new_ticket,omitempty"`
	HoldUntil *time.Time          `json:"hold_until,omitempty"`
}

// advanceStages stores each change's stage once and moves its booking's status forward, never
// backwards, for bookings that are all distinct, in one statement: one round trip for one event
// or a batch. The UPDATE needs no earlier locking read: it locks each row and compares ranks
// against the row as it stands then. If any booking is not known yet, nothing is stored and the
// error says to wait (kafka.NotYet).
func (p *Projection) advanceStages(ctx context.Context, changes []stageChange) error {
	rows := make([]stageRow, len(changes))
	ids := make([]string, len(changes)) // for the index: rows read from JSON look like a hundred to the planner
	for i, c := range changes {
		ids[i] = c.env.BookingID
		rows[i] = stageRow{N: i, BookingID: c.env.BookingID, Name: c.stage.Name, At: c.stage.At, Detail: c.stage.Detail, EventID: c.env.ID,
			Status: c.status, Rank: statusRank[c.status], SeatState: seatStateOf(c.status), Reason: c.reason, Ticket: c.ticket}
		if !c.stage.holdUntil.IsZero() {
			rows[i].HoldUntil = &c.stage.holdUntil
		}
	}
	raw, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("encode %d stages: %w", len(rows), err)
	}
	var stored []struct {
		BookingID   string    `db:"booking_id"`
		ShowID      string    `db:"show_id"`
		RequestedAt time.Time `db:"created_at"`
		Inserted    bool      `db:"inserted"`
	}
	// A status that changes the booking's seats (held, sold, free) takes a new seat version: live
	// seat maps ask for what changed after theirs. Other changes leave every indexed column as it
	// was, so the row can be updated in place (HOT: see migration 00015).
	err = prepared.Select(ctx, p.db, &stored, `WITH change AS (
			SELECT * FROM jsonb_to_recordset($1::jsonb) AS c (n int, booking_id text, name text, at timestamptz, detail text,
				event_id text, new_status text, new_rank int, new_seat_state text, new_reason text, new_ticket jsonb, hold_until timestamptz)
		), booking AS (
			SELECT id, show_id, created_at FROM web.bookings WHERE id = ANY($2::uuid[])
		), known AS (
			SELECT (SELECT count(*) FROM booking) = (SELECT count(*) FROM change) AS all_known
		), stage AS (
			INSERT INTO web.booking_stages (booking_id, name, at, detail, event_id)
			SELECT booking_id::uuid, name, at, detail, event_id FROM change WHERE (SELECT all_known FROM known)
			ON CONFLICT (booking_id, name) DO NOTHING RETURNING booking_id
		), moved AS (
			UPDATE web.bookings SET
				status = CASE WHEN c.new_rank > `+statusRankSQL+` THEN c.new_status ELSE status END,
				seat_version = CASE WHEN c.new_rank > `+statusRankSQL+` AND `+seatStateSQL+` <> c.new_seat_state THEN nextval('web.seat_changes') ELSE seat_version END,
				reason = CASE WHEN c.new_reason = '' THEN reason ELSE c.new_reason END,
				ticket = COALESCE(c.new_ticket, ticket), hold_expires_at = COALESCE(c.hold_until, hold_expires_at),
				updated_at = now()
			FROM change c JOIN stage s ON s.booking_id = c.booking_id::uuid
			WHERE id = s.booking_id AND id = ANY($2::uuid[])
		)
		SELECT c.booking_id, b.show_id, b.created_at, s.booking_id IS NOT NULL AS inserted
		FROM change c JOIN booking b ON b.id = c.booking_id::uuid LEFT JOIN stage s ON s.booking_id = b.id
		WHERE (SELECT all_known FROM known) ORDER BY c.n`, string(raw), pq.Array(ids))
	if err != nil {
		return fmt.Errorf("project %d stages: %w", len(changes), err)
	}
	if len(stored) < len(changes) {
		return kafka.NotYet(fmt.Errorf("%s for %s among %d: %w", changes[0].env.Type, changes[0].env.BookingID, len(changes), errBookingNotYetKnown))
	}
	for i, row := range stored {
		c := changes[i]
		if row.BookingID != c.env.BookingID {
			return fmt.Errorf("project %d stages: row %d is booking %s, want %s", len(changes), i, row.BookingID, c.env.BookingID)
		}
		if row.Inserted {
			p.metrics.recorded(c.stage.Name, c.env.OccurredAt.Sub(row.RequestedAt), c.stage.code)
		}
		if IsFinal(c.status) {
			p.backlog.ended(c.env.BookingID)
		}
		// Told even on a replay: another web replica sharing this database may have stored the
		// stage first; its streams were told, ours still have to be.
		p.onChange(row.ShowID, &StageNews{change: c})
	}
	return nil
}

// statusRankSQL is statusRank as an SQL expression over a web.bookings row's status.
var statusRankSQL = func() string {
	statuses := slices.Sorted(maps.Keys(statusRank))
	var b strings.Builder
	b.WriteString("(CASE status")
	for _, st := range statuses {
		fmt.Fprintf(&b, " WHEN '%s' THEN %d", st, statusRank[st])
	}
	b.WriteString(" END)")
	return b.String()
}()

// seatStateSQL is seatStateOf as an SQL expression over a web.bookings row's status.
var seatStateSQL = func() string {
	statuses := slices.Sorted(maps.Keys(statusRank))
	var b strings.Builder
	b.WriteString("(CASE status")
	for _, st := range statuses {
		fmt.Fprintf(&b, " WHEN '%s' THEN '%s'", st, seatStateOf(st))
	}
	b.WriteString(" END)")
	return b.String()
}()

// Booking loads one booking with its stages in the order they happen, as far as they are there
// without a gap (see orderedStages), in one round trip.
func (p *Projection) Booking(ctx context.Context, id string) (BookingStatus, error) {
	b, err := p.bookingAsStored(ctx, id)
	b.Stages = orderedStages(b.Stages)
	return b, err
}

// bookingAsStored loads one booking with every stage stored, in no particular order: what a
// stream keeps and brings up to date from the projection's news (StageNews.Apply).
func (p *Projection) bookingAsStored(ctx context.Context, id string) (BookingStatus, error) {
	var b struct {
		BookingStatus
		StagesJSON []byte `db:"stages"`
	}
	err := prepared.Get(ctx, p.db, &b, `SELECT id, show_id, seats, customer_name, phone_masked, card_brand,
		card_last4, status, reason, ticket, created_at, hold_expires_at,
		(SELECT COALESCE(json_agg(json_build_object('name', s.name, 'at', s.at, 'detail', s.detail)), '[]')
		 FROM web.booking_stages s WHERE s.booking_id = b.id) AS stages
		FROM web.bookings b WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return BookingStatus{}, ErrBookingNotFound
	}
	if err != nil {
		return BookingStatus{}, fmt.Errorf("load booking %s: %w", id, err)
	}
	if len(b.TicketJSON) > 0 {
		b.Ticket = new(event.TicketIssued)
		if err := json.Unmarshal(b.TicketJSON, b.Ticket); err != nil {
			return BookingStatus{}, fmt.Errorf("decode ticket of %s: %w", id, err)
		}
	}
	if err := json.Unmarshal(b.StagesJSON, &b.Stages); err != nil {
		return BookingStatus{}, fmt.Errorf("decode stages of %s: %w", id, err)
	}
	// In UTC, as the news tells them (StageNews.Apply).
	for i := range b.Stages {
		b.Stages[i].At = b.Stages[i].At.UTC()
	}
	if b.HoldUntil != nil {
		hold := b.HoldUntil.UTC()
		b.HoldUntil = &hold
	}
	return b.BookingStatus, nil
}

// StageNews is one stage as the projection has just stored it, for the streams that follow its
// booking: applied to the booking as they last had it, it gives what reading the booking again
// would, without the read (one per stage per booking followed, the most frequent query there was).
type StageNews struct{ change stageChange }

// BookingID is the booking the stage belongs to.
func (n *StageNews) BookingID() string { return n.change.env.BookingID }

// Apply brings b up to date with the stage exactly as advanceStages stored it: the stage is
// added once (by name; the first stored stands), and only a newly added stage moves the status
// forward (never backwards), sets the reason, the ticket and the hold. It reports whether b
// changed.
func (n *StageNews) Apply(b *BookingStatus) bool {
	c := n.change
	if slices.ContainsFunc(b.Stages, func(s Stage) bool { return s.Name == c.stage.Name }) {
		return false
	}
	b.Stages = append(b.Stages, Stage{Name: c.stage.Name, At: c.stage.At, Detail: c.stage.Detail})
	if statusRank[c.status] > statusRank[b.Status] {
		b.Status = c.status
	}
	if c.reason != "" {
		b.Reason = c.reason
	}
	if c.ticket != nil {
		b.Ticket = c.ticket
	}
	if !c.stage.holdUntil.IsZero() {
		hold := c.stage.holdUntil
		b.HoldUntil = &hold
	}
	return true
}

// mergeBookings is what both a and b know of one booking, each read or brought up to date at
// its own time: every stage of either (the first by name stands), the further status, and what
// either has of the reason, ticket and hold. Neither is changed.
func mergeBookings(a, b BookingStatus) BookingStatus {
	out := a
	out.Stages = slices.Clone(a.Stages)
	for _, st := range b.Stages {
		if !slices.ContainsFunc(out.Stages, func(s Stage) bool { return s.Name == st.Name }) {
			out.Stages = append(out.Stages, st)
		}
	}
	if statusRank[b.Status] > statusRank[out.Status] {
		out.Status = b.Status
	}
	if out.Reason == "" {
		out.Reason = b.Reason
	}
	if out.Ticket == nil {
		out.Ticket, out.TicketJSON, out.TicketCode = b.Ticket, b.TicketJSON, b.TicketCode
	}
	if out.HoldUntil == nil {
		out.HoldUntil = b.HoldUntil
	}
	return out
}

// stageOrder is each stage's place in a booking's progress (a failure takes the place of the
// success it replaces); SSE streams stages in this order even if the topics were read in another.
var stageOrder = map[string]int{
	StatusRequested: 0, StatusConfirmed: 1, StatusRejected: 1, StatusPaid: 2, StatusFailed: 2,
	StatusNotified: 3, StatusTicketed: 4,
}

// orderedStages sorts stages and cuts them at the first gap, so a stage read early (from a topic
// that ran ahead) waits until the stages before it are there.
func orderedStages(stages []Stage) []Stage {
	byOrder := make(map[int]Stage, len(stages))
	for _, s := range stages {
		byOrder[stageOrder[s.Name]] = s
	}
	out := make([]Stage, 0, len(stages))
	for i := 0; ; i++ {
		s, ok := byOrder[i]
		if !ok {
			return out
		}
		out = append(out, s)
	}
}

// SeatState is what the seat map shows of one seat.
type SeatState string

// A seat is free, held (someone is paying for it) or sold (its ticket is issued).
const (
	SeatFree SeatState = "free"
	SeatHeld SeatState = "held"
	SeatSold SeatState = "sold"
)

// seatStateOf is what a booking in this status does to its seats.
func seatStateOf(status string) SeatState {
	switch status {
	case StatusTicketed:
		return SeatSold
	case StatusRejected, StatusFailed:
		return SeatFree
	default:
		return SeatHeld
	}
}

// SeatMap is a show's seats as far as the web has heard: only the held and sold ones are listed.
type SeatMap struct {
	States map[string]SeatState
	// Version is the newest seat version among the show's bookings: a map rendered from this
	// one asks the live stream for what changed after it.
	Version int64
	// ReadAt is the database's clock when the map was read, the same clock updated_at is set
	// with: the page's render time for the stream's late-commit window.
	ReadAt time.Time
}

// State of one seat.
func (m SeatMap) State(label string) SeatState {
	if st, ok := m.States[label]; ok {
		return st
	}
	return SeatFree
}

// ShowSeats reads a show's seat map in one consistent snapshot.
func (p *Projection) ShowSeats(ctx context.Context, showID string) (SeatMap, error) {
	var rows []struct {
		Label   string    `db:"label"`
		Status  string    `db:"status"`
		Version int64     `db:"seat_version"`
		ReadAt  time.Time `db:"read_at"`
	}
	// One statement, so the version, the states and the clock come from the same snapshot; a
	// show's inactive bookings add only their version, and the last row is there for the clock.
	err := p.db.SelectContext(ctx, &rows, `SELECT unnest(CASE WHEN status IN ('rejected', 'failed') THEN ARRAY['']::text[] ELSE seats END) AS label,
		status, seat_version, now() AS read_at FROM web.bookings WHERE show_id = $1
		UNION ALL SELECT '', 'rejected', 0, now()`, showID)
	if err != nil {
		return SeatMap{}, fmt.Errorf("load seats of %s: %w", showID, err)
	}
	m := SeatMap{States: make(map[string]SeatState, len(rows))}
	for _, r := range rows {
		m.Version, m.ReadAt = max(m.Version, r.Version), r.ReadAt
		if r.Label == "" {
			continue
		}
		if st := seatStateOf(r.Status); st == SeatSold || m.States[r.Label] != SeatSold {
			m.States[r.Label] = st
		}
	}
	return m, nil
}

// seatCommitSlack is how long before a page was rendered a change may have been numbered and
// still have committed after the page was read.
const seatCommitSlack = 5 * time.Second

// SeatsChangedSince lists the seats of a show's bookings that changed after version, or that
// changed from a little before renderedAt (zero: versions only): a change numbered before the
// page's version may commit after the page was read, and must not be missed.
func (p *Projection) SeatsChangedSince(ctx context.Context, showID string, version int64, renderedAt time.Time) ([]string, error) {
	var since any // NULL: no time window
	if !renderedAt.IsZero() {
		since = renderedAt.Add(-seatCommitSlack)
	}
	var seats []string
	err := p.db.SelectContext(ctx, &seats, `SELECT DISTINCT unnest(seats) FROM web.bookings
		WHERE show_id = $1 AND (seat_version > $2 OR updated_at > $3)`, showID, version, since)
	if err != nil {
		return nil, fmt.Errorf("load changed seats of %s: %w", showID, err)
	}
	return seats, nil
}

// TakenSeats lists the seats of a show that are held or sold, as far as the web has heard.
func (p *Projection) TakenSeats(ctx context.Context, showID string) (map[string]bool, error) {
	m, err := p.ShowSeats(ctx, showID)
	if err != nil {
		return nil, err
	}
	taken := make(map[string]bool, len(m.States))
	for label := range m.States {
		taken[label] = true
	}
	return taken, nil
}

// Ticket finds a ticket by its id.
func (p *Projection) Ticket(ctx context.Context, ticketID string) (event.TicketIssued, string, error) {
	var row struct {
		ID     string `db:"id"`
		Ticket []byte `db:"ticket"`
	}
	err := p.db.GetContext(ctx, &row, `SELECT id, ticket FROM web.bookings WHERE ticket IS NOT NULL AND ticket->>'ticket_id' = $1`, ticketID)
	if errors.Is(err, sql.ErrNoRows) {
		return event.TicketIssued{}, "", ErrBookingNotFound
	}
	if err != nil {
		return event.TicketIssued{}, "", fmt.Errorf("load ticket %s: %w", ticketID, err)
	}
	var t event.TicketIssued
	if err := json.Unmarshal(row.Ticket, &t); err != nil {
		return event.TicketIssued{}, "", fmt.Errorf("decode ticket %s: %w", ticketID, err)
	}
	return t, row.ID, nil
}

// TakenCounts returns how many seats are held or sold for each of the shows.
func (p *Projection) TakenCounts(ctx context.Context, showIDs []string) (map[string]int, error) {
	var rows []struct {
		ShowID string `db:"show_id"`
		Taken  int    `db:"taken"`
	}
	err := p.db.SelectContext(ctx, &rows, `SELECT show_id, sum(cardinality(seats))::int AS taken FROM web.bookings
		WHERE show_id = ANY($1) AND status IN ('requested', 'confirmed', 'paid', 'notified', 'ticketed')
		GROUP BY show_id`, pq.Array(showIDs))
	if err != nil {
		return nil, fmt.Errorf("count taken seats: %w", err)
	}
	counts := make(map[string]int, len(rows))
	for _, r := range rows {
		counts[r.ShowID] = r.Taken
	}
	return counts, nil
}

func seatsRequested(seats []string) string {
	if len(seats) == 1 {
		return "Seat " + seats[0] + " requested"
	}
	return "Seats " + joinSeats(seats) + " requested"
}
