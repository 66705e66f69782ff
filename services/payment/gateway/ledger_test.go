package gateway_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/boxoffice/boxoffice/db"
	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/payment/gateway"
)

// TestSandboxChargeIsOneStatement: a charge of a card that answers at once is one statement
// (the insert), a repeated key still gets the first answer without a second ledger row, even
// from another card, and a repeat on the slow card answers from the ledger without its wait.
func TestSandboxChargeIsOneStatement(t *testing.T) {
	conn, statements := countedDB(t)
	sandbox := gateway.NewSandbox(conn)
	ctx := context.Background()
	tokenize := func(number string) gateway.ChargeRequest {
		card, err := sandbox.Tokenize(ctx, number)
		if err != nil {
			t.Fatal(err)
		}
		return gateway.ChargeRequest{IdempotencyKey: "booking-1", Card: card, AmountCents: 2790, Currency: "GBP"}
	}
	charge := func(req gateway.ChargeRequest) (gateway.ChargeResult, int64) {
		t.Helper()
		before := statements.Load()
		res, err := sandbox.Charge(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return res, statements.Load() - before
	}

	first, n := charge(tokenize("4242424242424242"))
	if !first.Approved || n != 1 {
		t.Errorf("first charge: %+v in %d statements, want approved in 1", first, n)
	}
	again, _ := charge(tokenize("4242424242424242"))
	declining, _ := charge(tokenize("4000000000000002"))
	start := time.Now()
	slow, _ := charge(tokenize("4000000000003063"))
	if again != first || declining != first || slow != first {
		t.Errorf("repeats of the key: %+v, %+v (a declining card), %+v (the slow card); want the first answer %+v", again, declining, slow, first)
	}
	if took := time.Since(start); took >= gateway.SlowCardDelay {
		t.Errorf("a repeat on the slow card took %v: it waited instead of reading the ledger", took)
	}
	var rows int
	if err := conn.Get(&rows, `SELECT count(*) FROM payment_sandbox.charges`); err != nil || rows != 1 {
		t.Errorf("%d ledger rows (err %v), want 1", rows, err)
	}
}

// countedDB is a migrated database whose handle counts the statements it runs.
func countedDB(t *testing.T) (*sqlx.DB, *atomic.Int64) {
	t.Helper()
	url := dbtest.NewURL(t)
	ctx := context.Background()
	admin, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := db.Migrate(ctx, admin, nil); err != nil {
		t.Fatal(err)
	}
	connector, err := pq.NewConnector(url)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	conn := sqlx.NewDb(sql.OpenDB(countingConnector{connector, &n}), db.DriverName)
	t.Cleanup(func() { _ = conn.Close() })
	return conn, &n
}

// countingConnector hands out connections that count every statement executed. It offers
// database/sql none of the driver's shortcuts, so every statement goes through a counted Stmt.
type countingConnector struct {
	driver.Connector
	n *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return countingConn{conn, c.n}, nil
}

type countingConn struct {
	driver.Conn
	n *atomic.Int64
}

func (c countingConn) Prepare(query string) (driver.Stmt, error) {
	s, err := c.Conn.Prepare(query)
	if err != nil {
		return nil, err
	}
	return countingStmt{s, c.n}, nil
}

type countingStmt struct {
	driver.Stmt
	n *atomic.Int64
}

func (s countingStmt) Exec(args []driver.Value) (driver.Result, error) {
	s.n.Add(1)
	return s.Stmt.Exec(args)
}

func (s countingStmt) Query(args []driver.Value) (driver.Rows, error) {
	s.n.Add(1)
	return s.Stmt.Query(args)
}

// TestSandboxChargeAllAnswersAsChargeWould: a batch of quick cards is one statement, whatever
// its cards say, and each request gets the answer Charge gives it: approvals, both declines, an
// unknown token declined, a key charged before answered as first charged (even from another
// card), a key twice in the batch charged once. A repeat of the batch moves no money.
func TestSandboxChargeAllAnswersAsChargeWould(t *testing.T) {
	conn, statements := countedDB(t)
	sandbox := gateway.NewSandbox(conn)
	ctx := context.Background()
	request := func(key, number string) gateway.ChargeRequest { return chargeOf(t, sandbox, key, number) }
	before, err := sandbox.Charge(ctx, request("charged-before", "4000000000000002"))
	if err != nil {
		t.Fatal(err)
	}
	unknown := request("unknown", "4242424242424242")
	unknown.Card.Token = "tok_live_4242_0123456789abcdef"
	reqs := []gateway.ChargeRequest{
		request("pays", "4242424242424242"),
		request("declined", "4000000000000002"),
		request("insufficient", "4000000000009995"),
		unknown,
		request("charged-before", "4242424242424242"),
		request("twice", "5555555555554444"),
		request("twice", "4000000000000002"),
	}
	start := statements.Load()
	results, err := sandbox.ChargeAll(ctx, reqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := statements.Load() - start; n != 1 {
		t.Errorf("a batch of %d quick charges took %d statements, want 1", len(reqs), n)
	}
	want := []struct {
		approved bool
		code     string
	}{{true, ""}, {false, gateway.DeclineGeneric}, {false, gateway.DeclineInsufficientFunds}, {false, gateway.DeclineGeneric},
		{false, gateway.DeclineGeneric}, {true, ""}, {true, ""}}
	for i, w := range want {
		if r := results[i]; r.Approved != w.approved || r.DeclineCode != w.code || r.Reference == "" {
			t.Errorf("%s (%s): %+v, want approved=%v code=%q", reqs[i].IdempotencyKey, reqs[i].Card.Token, r, w.approved, w.code)
		}
	}
	if results[4] != before {
		t.Errorf("the key charged before answered %+v, want its first answer %+v", results[4], before)
	}
	if results[5] != results[6] {
		t.Errorf("one key twice in a batch answered %+v and %+v, want one charge", results[5], results[6])
	}
	again, err := sandbox.ChargeAll(ctx, reqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		if again[i] != results[i] {
			t.Errorf("%s repeated: %+v, want the first answer %+v", reqs[i].IdempotencyKey, again[i], results[i])
		}
	}
	var rows int
	if err := conn.Get(&rows, `SELECT count(*) FROM payment_sandbox.charges`); err != nil || rows != 6 {
		t.Errorf("%d ledger rows (err %v), want one for each of the 6 keys", rows, err)
	}
	if _, err := sandbox.ChargeAll(ctx, []gateway.ChargeRequest{{Card: reqs[0].Card, AmountCents: 1}}, nil); err == nil {
		t.Error("a charge without an idempotency key was taken")
	}
}

// TestSandboxChargeAllRacingChargeChargesOnce: a batch and single charges of the same keys at
// the same moment (a redelivery meeting the first delivery) record one charge per key, and
// both callers hear the same answer for it.
func TestSandboxChargeAllRacingChargeChargesOnce(t *testing.T) {
	conn, _ := countedDB(t)
	sandbox := gateway.NewSandbox(conn)
	ctx := context.Background()
	card, err := sandbox.Tokenize(ctx, "4242424242424242")
	if err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		reqs := make([]gateway.ChargeRequest, 8)
		for i := range reqs {
			reqs[i] = gateway.ChargeRequest{IdempotencyKey: fmt.Sprintf("round-%d-%d", round, i), Card: card, AmountCents: 1395, Currency: "GBP"}
		}
		singles := make([]gateway.ChargeResult, len(reqs))
		var batch []gateway.ChargeResult
		var wg sync.WaitGroup
		errs := make(chan error, len(reqs)+1)
		wg.Go(func() {
			var err error
			batch, err = sandbox.ChargeAll(ctx, reqs, nil)
			errs <- err
		})
		for i, req := range reqs {
			wg.Go(func() {
				var err error
				singles[i], err = sandbox.Charge(ctx, req)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := range reqs {
			if batch[i] != singles[i] || !batch[i].Approved {
				t.Fatalf("%s: the batch heard %+v, the single charge %+v; want one approval", reqs[i].IdempotencyKey, batch[i], singles[i])
			}
		}
	}
	var rows int
	if err := conn.Get(&rows, `SELECT count(*) FROM payment_sandbox.charges`); err != nil || rows != 20*8 {
		t.Errorf("%d ledger rows (err %v), want %d", rows, err, 20*8)
	}
}

// TestSandboxChargeAllAnswersQuickCardsFirst: in a batch with the slow test card, the quick
// card's answer is given (answered) as soon as it is recorded, not when the slow one's is, and
// both are charged once. A batch with a request that has no idempotency key is refused whole:
// not even its slow card is charged later.
func TestSandboxChargeAllAnswersQuickCardsFirst(t *testing.T) {
	conn, _ := countedDB(t)
	sandbox := gateway.NewSandbox(conn)
	ctx := context.Background()
	request := func(key, number string) gateway.ChargeRequest { return chargeOf(t, sandbox, key, number) }
	reqs := []gateway.ChargeRequest{request("slow", "4000000000003063"), request("quick", "4242424242424242")}
	var mu sync.Mutex
	answeredAt := map[int]time.Time{}
	results, err := sandbox.ChargeAll(ctx, reqs, func(i int) {
		mu.Lock()
		defer mu.Unlock()
		answeredAt[i] = time.Now()
	})
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Approved || !results[1].Approved || results[0].Reference == results[1].Reference {
		t.Errorf("results %+v, want two approvals", results)
	}
	if len(answeredAt) != 2 || answeredAt[0].Sub(answeredAt[1]) < gateway.SlowCardDelay/2 {
		t.Errorf("answered at %v; want the quick card's answer well before the slow card's", answeredAt)
	}

	refused := []gateway.ChargeRequest{request("slow-refused", "4000000000003063"), {Card: reqs[1].Card, AmountCents: 1}}
	if _, err := sandbox.ChargeAll(ctx, refused, nil); err == nil {
		t.Fatal("a batch with a request without an idempotency key was taken")
	}
	time.Sleep(gateway.SlowCardDelay + 500*time.Millisecond)
	var rows int
	if err := conn.Get(&rows, `SELECT count(*) FROM payment_sandbox.charges WHERE idempotency_key = 'slow-refused'`); err != nil || rows != 0 {
		t.Errorf("%d charges of the refused batch's slow card (err %v), want none", rows, err)
	}
}

// chargeOf is a request to charge the sandbox test card number under key.
func chargeOf(t *testing.T, sandbox *gateway.Sandbox, key, number string) gateway.ChargeRequest {
	t.Helper()
	card, err := sandbox.Tokenize(context.Background(), number)
	if err != nil {
		t.Fatal(err)
	}
	return gateway.ChargeRequest{IdempotencyKey: key, Card: card, AmountCents: 1395, Currency: "GBP"}
}
