package gateway_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
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
