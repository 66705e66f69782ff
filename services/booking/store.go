package booking

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/services/event"
	"github.com/boxoffice/boxoffice/services/kafka"
	"github.com/boxoffice/boxoffice/services/outbox"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// Store is the booking service's own schema: bookings and the seats they hold.
type Store struct {
	db  *sqlx.DB
	log *slog.Logger
}

// NewStore returns the booking store over db.
func NewStore(db *sqlx.DB, log *slog.Logger) *Store { return &Store{db: db, log: log} }

// Decided reports whether the booking was already decided (confirmed or rejected).
func (s *Store) Decided(ctx context.Context, bookingID string) (bool, error) {
	var decided bool
	err := prepared.Get(ctx, s.db, &decided, `SELECT EXISTS (SELECT 1 FROM booking.bookings WHERE id = $1)`, bookingID)
	if err != nil {
		return false, fmt.Errorf("look up booking %s: %w", bookingID, err)
	}
	return decided, nil
}

// MissingSeats returns the labels that are not seats of the screen, sorted.
func (s *Store) MissingSeats(ctx context.Context, screenID string, labels []string) ([]string, error) {
	var existing []string
	// Each label looked up by the whole key: planned once, generically, "label = ANY($2)" was a
	// filter over the screen's every seat (TestABookingReadsNoTableWhole).
	err := prepared.Select(ctx, s.db, &existing, `SELECT l.label FROM unnest($2::text[]) AS l (label)
		CROSS JOIN LATERAL (SELECT 1 FROM catalog.seats s WHERE s.screen_id = $1 AND s.label = l.label LIMIT 1) AS seat`,
		screenID, pq.Array(labels))
	if err != nil {
		return nil, fmt.Errorf("check seats of %s: %w", screenID, err)
	}
	return missingFrom(labelSet(existing), labels), nil
}

func labelSet(labels []string) map[string]bool {
	set := make(map[string]bool, len(labels))
	for _, l := range labels {
		set[l] = true
	}
	return set
}

// missingFrom returns the labels not in seats, sorted.
func missingFrom(seats map[string]bool, labels []string) []string {
	var missing []string
	for _, l := range labels {
		if !seats[l] {
			missing = append(missing, l)
		}
	}
	sort.Strings(missing)
	return missing
}

// Tables of the booking service's outbox and inbox.
const (
	OutboxTable = "booking.outbox"
	InboxTable  = "booking.inbox"
)

// Hold records a confirmed booking and holds its seats, all or nothing, together with the id of
// the request event and the movie-found outcome queued in the outbox. First, what the bookings
// sharing each of the buyer's capped keys hold of the show is given to within: an error from it
// records nothing and is returned. If any seat is already held it records nothing and returns
// the taken seats. The check is made first, so the primary key on held_seats is the last line
// of defence, not the only one.
func (s *Store) Hold(ctx context.Context, cause event.Envelope, d event.BookingDetails, who Buyer, holdExpiresAt time.Time, outcome event.Envelope,
	capped []BuyerKey, within func(Holdings) error) (taken []string, err error) {
	bookingID := cause.BookingID
	raw, err := encodeEnvelope(outcome)
	if err != nil {
		return nil, err
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("hold seats: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if first, err := outbox.FirstDelivery(ctx, tx, InboxTable, cause.ID); err != nil || !first {
		return nil, err
	}

	if len(capped) > 0 {
		holding, err := holdingsOf(ctx, tx, capped)
		if err != nil {
			return nil, err
		}
		if err := within(holding); err != nil {
			return nil, err
		}
	}
	if taken, err = heldSeats(ctx, tx, d.ShowID, d.Seats, bookingID); err != nil || len(taken) > 0 {
		return taken, err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO booking.bookings
		(id, show_id, seats, customer_name, phone_masked, amount_cents, currency, status, outcome_event, hold_expires_at,
		 buyer_session, buyer_address, buyer_phone, buyer_card)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'confirmed', $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`,
		bookingID, d.ShowID, pq.Array(d.Seats), d.CustomerName, d.PhoneMasked, d.AmountCents, d.Currency, string(raw), holdExpiresAt,
		who.Session, who.Address, who.Phone, who.Card)
	if err != nil {
		return nil, fmt.Errorf("record booking %s: %w", bookingID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Another delivery of the same request decided it while we were checking: its
		// decision stands, and was announced by it.
		return nil, nil
	}
	var inserted []string
	if err := tx.SelectContext(ctx, &inserted, `INSERT INTO booking.held_seats (show_id, seat_label, booking_id)
		SELECT $1, unnest($2::text[]), $3
		ON CONFLICT (show_id, seat_label) DO NOTHING
		RETURNING seat_label`, d.ShowID, pq.Array(d.Seats), bookingID); err != nil {
		return nil, fmt.Errorf("hold seats of %s: %w", bookingID, err)
	}
	if len(inserted) != len(d.Seats) {
		// Another transaction took a seat between our check and our insert. One show's
		// requests are decided one at a time (keyed by show), so this should never happen: it
		// is logged loudly, as the contention test checks.
		s.log.WarnContext(ctx, "double sale stopped by the database constraint alone", "booking_id", bookingID, "show_id", d.ShowID, "seats", d.Seats)
		_ = tx.Rollback()
		taken, err = heldSeats(ctx, s.db, d.ShowID, d.Seats, bookingID)
		if err == nil && len(taken) == 0 {
			err = errors.New("seats were taken and released while holding them; retrying")
		}
		return taken, err
	}
	if err := outbox.Add(ctx, tx, OutboxTable, kafka.Message{Topic: event.TopicMovieFound, Key: bookingID, Envelope: outcome}); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("hold seats of %s: %w", bookingID, err)
	}
	return nil, nil
}

// heldSeats lists which of the seats another booking than self holds.
func heldSeats(ctx context.Context, q sqlx.QueryerContext, showID string, seats []string, self string) ([]string, error) {
	var taken []string
	err := sqlx.SelectContext(ctx, q, &taken, `SELECT seat_label FROM booking.held_seats
		WHERE show_id = $1 AND seat_label = ANY($2) AND booking_id <> $3 ORDER BY seat_label`, showID, pq.Array(seats), self)
	if err != nil {
		return nil, fmt.Errorf("check held seats of %s: %w", showID, err)
	}
	return taken, nil
}

// Reject records a rejected booking and queues its movie-found outcome, so a redelivered
// request changes nothing. If the booking was already decided (by a concurrent delivery), that
// decision is kept and nothing more is announced.
func (s *Store) Reject(ctx context.Context, cause event.Envelope, req event.BookingRequested, phoneMasked, code, reason string, outcome event.Envelope) error {
	bookingID := cause.BookingID
	raw, err := encodeEnvelope(outcome)
	if err != nil {
		return err
	}
	seats := req.Seats
	if seats == nil {
		seats = []string{}
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record rejection of %s: %w", bookingID, err)
	}
	defer func() { _ = tx.Rollback() }()
	if first, err := outbox.FirstDelivery(ctx, tx, InboxTable, cause.ID); err != nil || !first {
		return err
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO booking.bookings
		(id, show_id, seats, customer_name, phone_masked, amount_cents, currency, status, reason_code, reason, outcome_event)
		VALUES ($1, $2, $3, $4, $5, 0, '', 'rejected', $6, $7, $8)
		ON CONFLICT (id) DO NOTHING`,
		bookingID, req.ShowID, pq.Array(seats), req.CustomerName, phoneMasked, code, reason, string(raw))
	if err != nil {
		return fmt.Errorf("record rejection of %s: %w", bookingID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		if err := outbox.Add(ctx, tx, OutboxTable, kafka.Message{Topic: event.TopicMovieFound, Key: bookingID, Envelope: outcome}); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record rejection of %s: %w", bookingID, err)
	}
	return nil
}

// ExpireHolds finds confirmed bookings whose hold ran out by now and whose expiry was not yet
// announced, or was announced before reannounceBefore without an answer, and queues a
// booking.hold_expired event for each (built by newEvent from the booking's seats-confirmed
// event), marking them announced in the same transaction. Replicas sweeping at once skip each
// other's rows.
func (s *Store) ExpireHolds(ctx context.Context, now, reannounceBefore time.Time, newEvent func(bookingID string, c event.SeatsConfirmed) (event.Envelope, error)) (int, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("expire holds: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var rows []struct {
		ID      string `db:"id"`
		Outcome []byte `db:"outcome_event"`
	}
	if err := tx.SelectContext(ctx, &rows, `SELECT id, outcome_event FROM booking.bookings
		WHERE status = 'confirmed' AND hold_expires_at <= $1
		  AND (expiry_requested_at IS NULL OR expiry_requested_at <= $2)
		ORDER BY hold_expires_at LIMIT 500 FOR UPDATE SKIP LOCKED`, now, reannounceBefore); err != nil {
		return 0, fmt.Errorf("expire holds: %w", err)
	}
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		var confirmed event.SeatsConfirmed
		env, err := event.Decode(r.Outcome)
		if err == nil {
			err = env.Decode(&confirmed)
		}
		if err != nil {
			return 0, fmt.Errorf("expire hold of %s: its seats-confirmed event: %w", r.ID, err)
		}
		expired, err := newEvent(r.ID, confirmed)
		if err != nil {
			return 0, err
		}
		expired.Traceparent = kafka.NextSpan(env.Traceparent) // one booking, one trace
		if err := outbox.Add(ctx, tx, OutboxTable, kafka.Message{Topic: event.TopicMovieFound, Key: r.ID, Envelope: expired}); err != nil {
			return 0, err
		}
		ids = append(ids, r.ID)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE booking.bookings SET expiry_requested_at = $2, updated_at = now()
		WHERE id = ANY($1::uuid[])`, pq.Array(ids), now); err != nil {
		return 0, fmt.Errorf("expire holds: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("expire holds: %w", err)
	}
	return len(ids), nil
}

// MarkPaid moves a confirmed booking to paid. Replays change nothing. One statement, so one
// round trip and its own transaction: the event id into the inbox, and the status moved only if
// the id was new.
func (s *Store) MarkPaid(ctx context.Context, cause event.Envelope) error {
	if _, err := prepared.Exec(ctx, s.db, `WITH first AS (
			INSERT INTO `+InboxTable+` (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING RETURNING 1
		)
		UPDATE booking.bookings SET status = 'paid', updated_at = now()
		WHERE id = $2 AND status = 'confirmed' AND EXISTS (SELECT 1 FROM first)`, cause.ID, cause.BookingID); err != nil {
		return fmt.Errorf("mark %s paid: %w", cause.BookingID, err)
	}
	return nil
}

// MarkAllPaid moves the confirmed bookings of causes (payment successes, one per booking) to
// paid in one statement, as MarkPaid would one by one: every event id goes into the inbox, and
// only a booking whose event id was new moves, so a redelivery changes nothing.
func (s *Store) MarkAllPaid(ctx context.Context, causes []event.Envelope) error {
	eventIDs, bookingIDs := make([]string, len(causes)), make([]string, len(causes))
	for i, c := range causes {
		eventIDs[i], bookingIDs[i] = c.ID, c.BookingID
	}
	if _, err := prepared.Exec(ctx, s.db, `WITH paid (event_id, booking_id) AS (
			SELECT * FROM unnest($1::text[], $2::uuid[])
		), first AS (
			INSERT INTO `+InboxTable+` (event_id) SELECT event_id FROM paid
			ON CONFLICT (event_id) DO NOTHING RETURNING event_id
		)
		UPDATE booking.bookings b SET status = 'paid', updated_at = now()
		FROM paid JOIN first USING (event_id)
		WHERE b.id = paid.booking_id AND b.status = 'confirmed'`, pq.Array(eventIDs), pq.Array(bookingIDs)); err != nil {
		return fmt.Errorf("mark %d bookings paid: %w", len(causes), err)
	}
	return nil
}

// Fail moves a confirmed booking to failed and releases its seats, in one transaction. It
// returns how many seats were released (0 on a replay).
func (s *Store) Fail(ctx context.Context, cause event.Envelope, code, reason string) (int64, error) {
	bookingID := cause.BookingID
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("fail booking %s: %w", bookingID, err)
	}
	defer func() { _ = tx.Rollback() }()
	if first, err := outbox.FirstDelivery(ctx, tx, InboxTable, cause.ID); err != nil || !first {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE booking.bookings
		SET status = 'failed', reason_code = $2, reason = $3, updated_at = now()
		WHERE id = $1 AND status = 'confirmed'`, bookingID, code, reason); err != nil {
		return 0, fmt.Errorf("fail booking %s: %w", bookingID, err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM booking.held_seats WHERE booking_id = $1
		AND EXISTS (SELECT 1 FROM booking.bookings WHERE id = $1 AND status = 'failed')`, bookingID)
	if err != nil {
		return 0, fmt.Errorf("release seats of %s: %w", bookingID, err)
	}
	released, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("fail booking %s: %w", bookingID, err)
	}
	return released, nil
}

// ShowSeat names one seat of one show.
type ShowSeat struct{ ShowID, Label string }

// Decision is one booking decided in a batch: confirmed (its seats held) or rejected, with the
// movie-found event that announces it.
type Decision struct {
	BookingID     string         `json:"id"`
	ShowID        string         `json:"show_id"`
	Seats         []string       `json:"seats"`
	CustomerName  string         `json:"customer_name"`
	PhoneMasked   string         `json:"phone_masked"`
	AmountCents   int64          `json:"amount_cents"`
	Currency      string         `json:"currency"`
	Status        string         `json:"status"` // confirmed or rejected
	ReasonCode    string         `json:"reason_code"`
	Reason        string         `json:"reason"`
	Outcome       event.Envelope `json:"outcome_event"`
	HoldExpiresAt *time.Time     `json:"hold_expires_at"`
	Buyer                        // who holds the seats, for the seat caps; empty when rejected
}

// SeatLabels lists every seat label of a screen.
func (s *Store) SeatLabels(ctx context.Context, screenID string) ([]string, error) {
	var labels []string
	if err := s.db.SelectContext(ctx, &labels, `SELECT label FROM catalog.seats WHERE screen_id = $1`, screenID); err != nil {
		return nil, fmt.Errorf("list seats of %s: %w", screenID, err)
	}
	return labels, nil
}

// errBatchDisturbed means the bulk path met something a single decision handles with care (a
// request seen before, a seat taken behind the batch's back): the batch is rolled back whole.
var errBatchDisturbed = errors.New("batch disturbed")

// DecideBatch records a batch of decisions in one transaction: the requests' event ids in the
// inbox, the bookings, the held seats and the movie-found outcomes. decide is given which of the
// wanted seats are held now, and how many seats of their show the bookings sharing each of the
// buyers' keys hold, and returns the decisions, in order. Like Hold, the check comes first
// and the primary key on held_seats is the last line of defence: if it refuses a seat, or a
// request was handled before, nothing is recorded and errBatchDisturbed is returned, for the
// requests to be decided one at a time.
//
// The transaction is four round trips, whatever the batch's size: BEGIN, the inbox and the held
// seats (one prepared statement), the bookings, seats and outcomes (another), COMMIT. It was
// seven, each statement planned again on every call; at the rates where most batches hold a
// request or two, that was paid per request.
//
// It returns the outcomes it queued and their outbox rows' ids, for the relay's fast lane.
func (s *Store) DecideBatch(ctx context.Context, eventIDs []string, wanted []ShowSeat, buyers []BuyerKey,
	decide func(held map[ShowSeat]bool, holding Holdings) ([]Decision, error)) (queued []int64, outcomes []kafka.Message, err error) {
	// Prepared before the transaction takes its connection: preparing needs one of its own.
	check, err := prepared.ForTx(ctx, s.db, decideBatchCheck)
	if err != nil {
		return nil, nil, fmt.Errorf("decide batch: %w", err)
	}
	record, err := prepared.ForTx(ctx, s.db, decideBatchRecord)
	if err != nil {
		return nil, nil, fmt.Errorf("decide batch: %w", err)
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("decide batch: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	wantedShows, wantedLabels := make([]string, len(wanted)), make([]string, len(wanted))
	for i, w := range wanted {
		wantedShows[i], wantedLabels[i] = w.ShowID, w.Label
	}
	buyerShows, buyerKinds, buyerKeys := buyerColumns(buyers)
	var checked struct {
		Fresh         int            `db:"fresh"`
		Shows         pq.StringArray `db:"held_shows"`
		Labels        pq.StringArray `db:"held_labels"`
		HoldingShows  pq.StringArray `db:"holding_shows"`
		HoldingKinds  pq.StringArray `db:"holding_kinds"`
		HoldingKeys   pq.StringArray `db:"holding_keys"`
		HoldingCounts pq.Int64Array  `db:"holding_seats"`
	}
	if err := check.Get(ctx, tx, &checked, pq.Array(eventIDs), pq.Array(wantedShows), pq.Array(wantedLabels),
		pq.Array(buyerShows), pq.Array(buyerKinds), pq.Array(buyerKeys)); err != nil {
		return nil, nil, fmt.Errorf("decide batch: inbox and held seats: %w", err)
	}
	if checked.Fresh != len(eventIDs) {
		return nil, nil, fmt.Errorf("%w: %d of %d requests handled before", errBatchDisturbed, len(eventIDs)-checked.Fresh, len(eventIDs))
	}
	held := make(map[ShowSeat]bool, len(checked.Shows))
	for i := range checked.Shows {
		held[ShowSeat{checked.Shows[i], checked.Labels[i]}] = true
	}
	holding := make(Holdings, len(checked.HoldingShows))
	for i := range checked.HoldingShows {
		holding[BuyerKey{checked.HoldingShows[i], checked.HoldingKinds[i], checked.HoldingKeys[i]}] = int(checked.HoldingCounts[i])
	}
	decisions, err := decide(held, holding)
	if err != nil {
		return nil, nil, err
	}

	rows, err := json.Marshal(decisions)
	if err != nil {
		return nil, nil, fmt.Errorf("decide batch: encode: %w", err)
	}
	var shows, labels, holders []string
	outcomes = make([]kafka.Message, len(decisions))
	for i, d := range decisions {
		if d.Status == "confirmed" {
			for _, seat := range d.Seats {
				shows, labels, holders = append(shows, d.ShowID), append(labels, seat), append(holders, d.BookingID)
			}
		}
		outcomes[i] = kafka.Message{Topic: event.TopicMovieFound, Key: d.BookingID, Envelope: d.Outcome}
	}
	topics, keys, envelopes, err := outbox.Columns(ctx, outcomes)
	if err != nil {
		return nil, nil, err
	}
	var recorded struct {
		Bookings int           `db:"bookings"`
		Seats    int           `db:"seats"`
		Queued   pq.Int64Array `db:"queued"`
	}
	if err := record.Get(ctx, tx, &recorded, string(rows), pq.Array(shows), pq.Array(labels), pq.Array(holders),
		pq.Array(topics), pq.Array(keys), pq.Array(envelopes)); err != nil {
		return nil, nil, fmt.Errorf("decide batch: record: %w", err)
	}
	if recorded.Bookings != len(decisions) {
		return nil, nil, fmt.Errorf("%w: %d of %d bookings were recorded before", errBatchDisturbed, len(decisions)-recorded.Bookings, len(decisions))
	}
	if recorded.Seats != len(shows) {
		s.log.WarnContext(ctx, "double sale stopped by the database constraint alone; deciding the batch one by one", "seats", len(shows), "held", recorded.Seats)
		return nil, nil, fmt.Errorf("%w: %d of %d seats were taken meanwhile", errBatchDisturbed, len(shows)-recorded.Seats, len(shows))
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("decide batch: %w", err)
	}
	return recorded.Queued, outcomes, nil
}

// decideBatchCheck records a batch's event ids in the inbox ($1) and reads which of the wanted
// seats ($2 shows, $3 labels) are held, and what the bookings sharing each buyer key ($4 shows,
// $5 kinds, $6 keys: holdingsQuery) hold: how many ids were new, the held seats as two arrays in
// step, and the holdings as four. Without buyer keys (the caps off) the holdings cost nothing.
var decideBatchCheck = `WITH recorded AS (
		INSERT INTO booking.inbox (event_id) SELECT unnest($1::text[]) ON CONFLICT (event_id) DO NOTHING RETURNING 1
	), held AS (
		-- Each wanted seat looked up by its key: the plan is made once, maybe on an empty table,
		-- and as a join it may hash the whole table on every call.
		SELECT w.show_id, w.seat_label FROM unnest($2::text[], $3::text[]) AS w (show_id, seat_label)
		CROSS JOIN LATERAL (
			SELECT 1 FROM booking.held_seats h WHERE h.show_id = w.show_id AND h.seat_label = w.seat_label LIMIT 1
		) AS h
	), ` + holdingsQuery(4) + `
	SELECT (SELECT count(*) FROM recorded) AS fresh,
		ARRAY(SELECT show_id FROM held ORDER BY show_id, seat_label) AS held_shows,
		ARRAY(SELECT seat_label FROM held ORDER BY show_id, seat_label) AS held_labels,
		ARRAY(SELECT show_id FROM holding ORDER BY show_id, kind, key) AS holding_shows,
		ARRAY(SELECT kind FROM holding ORDER BY show_id, kind, key) AS holding_kinds,
		ARRAY(SELECT key FROM holding ORDER BY show_id, kind, key) AS holding_keys,
		ARRAY(SELECT seats FROM holding ORDER BY show_id, kind, key) AS holding_seats`

// decideBatchRecord records a batch's decisions ($1, booking rows as JSON), the seats the
// confirmed ones hold ($2 shows, $3 labels, $4 bookings) and their outcomes in the outbox ($5
// topics, $6 keys, $7 envelopes: outbox.Columns), and counts the bookings and seats
// that were new: fewer means the transaction must not commit. It returns the outbox rows' ids. The seats' foreign key is checked
// at the end of the statement, where it sees the bookings inserted beside them.
var decideBatchRecord = `WITH recorded AS (
		INSERT INTO booking.bookings (id, show_id, seats, customer_name, phone_masked, amount_cents, currency,
			status, reason_code, reason, outcome_event, hold_expires_at, buyer_session, buyer_address, buyer_phone, buyer_card)
		SELECT id, show_id, seats, customer_name, phone_masked, amount_cents, currency,
			status, reason_code, reason, outcome_event, hold_expires_at, buyer_session, buyer_address, buyer_phone, buyer_card
		FROM jsonb_populate_recordset(NULL::booking.bookings, $1::jsonb)
		ON CONFLICT (id) DO NOTHING RETURNING 1
	), held AS (
		INSERT INTO booking.held_seats (show_id, seat_label, booking_id)
		SELECT * FROM unnest($2::text[], $3::text[], $4::uuid[])
		ON CONFLICT (show_id, seat_label) DO NOTHING RETURNING 1
	), queued AS (
		` + outbox.QueueFrom(OutboxTable, 5, 6, 7) + `
	)
	SELECT (SELECT count(*) FROM recorded) AS bookings, (SELECT count(*) FROM held) AS seats,
		ARRAY(SELECT id FROM queued) AS queued`
