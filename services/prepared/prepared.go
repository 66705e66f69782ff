// Package prepared runs the hot queries, those made for every booking or every stage, as
// prepared statements. PostgreSQL then parses and plans each of them once per connection
// instead of on every call: under load, planning took as long as executing (pg_stat_statements
// with track_planning, November 2026), a third of a millisecond for the web's stage statement.
// database/sql prepares a statement again on each pooled connection as it needs it. Statements
// are kept for the life of the process, per database handle (a few dozen queries).
package prepared

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

type key struct {
	db    *sqlx.DB
	query string
}

var statements sync.Map // key → *sqlx.Stmt

func statement(ctx context.Context, db *sqlx.DB, query string) (*sqlx.Stmt, error) {
	k := key{db, query}
	if s, ok := statements.Load(k); ok {
		return s.(*sqlx.Stmt), nil
	}
	s, err := db.PreparexContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if prior, loaded := statements.LoadOrStore(k, s); loaded {
		_ = s.Close() // another goroutine prepared it first
		return prior.(*sqlx.Stmt), nil
	}
	return s, nil
}

// run runs fn with the query's prepared statement. A statement PostgreSQL refuses because the
// schema changed under it ("cached plan must not change result type", SQLSTATE 0A000: a newer
// process migrated the database) is prepared again, once.
func run(ctx context.Context, db *sqlx.DB, query string, fn func(*sqlx.Stmt) error) error {
	s, err := statement(ctx, db, query)
	if err != nil {
		return err
	}
	err = fn(s)
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "0A000" {
		statements.CompareAndDelete(key{db, query}, s)
		_ = s.Close()
		if s, err = statement(ctx, db, query); err != nil {
			return err
		}
		err = fn(s)
	}
	return err
}

// Get runs query as a prepared statement and scans its one row into dest, like sqlx.GetContext.
func Get(ctx context.Context, db *sqlx.DB, dest any, query string, args ...any) error {
	return run(ctx, db, query, func(s *sqlx.Stmt) error { return s.GetContext(ctx, dest, args...) })
}

// Select runs query as a prepared statement and scans its rows into dest, like sqlx.SelectContext.
func Select(ctx context.Context, db *sqlx.DB, dest any, query string, args ...any) error {
	return run(ctx, db, query, func(s *sqlx.Stmt) error { return s.SelectContext(ctx, dest, args...) })
}

// Exec runs query as a prepared statement, like sqlx's ExecContext.
func Exec(ctx context.Context, db *sqlx.DB, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := run(ctx, db, query, func(s *sqlx.Stmt) error {
		var err error
		res, err = s.ExecContext(ctx, args...)
		return err
	})
	return res, err
}

// InTx is a statement prepared on a database handle, for transactions on it: database/sql
// prepares it on a transaction's connection once and keeps it there.
type InTx struct {
	db    *sqlx.DB
	query string
	stmt  *sqlx.Stmt
}

// ForTx prepares query on db for use within transactions. Call it before the transaction
// begins: preparing needs a connection of its own, and the transaction holds one.
func ForTx(ctx context.Context, db *sqlx.DB, query string) (*InTx, error) {
	s, err := statement(ctx, db, query)
	if err != nil {
		return nil, err
	}
	return &InTx{db: db, query: query, stmt: s}, nil
}

// Select is Select within tx, a transaction on the statement's database handle. A statement
// whose plan went stale fails the transaction, and is prepared afresh for the next one.
func (s *InTx) Select(ctx context.Context, tx *sqlx.Tx, dest any, args ...any) error {
	return s.forget(tx.StmtxContext(ctx, s.stmt).SelectContext(ctx, dest, args...))
}

// Get is Get within tx, as Select is.
func (s *InTx) Get(ctx context.Context, tx *sqlx.Tx, dest any, args ...any) error {
	return s.forget(tx.StmtxContext(ctx, s.stmt).GetContext(ctx, dest, args...))
}

// Exec is Exec within tx, as Select is.
func (s *InTx) Exec(ctx context.Context, tx *sqlx.Tx, args ...any) (sql.Result, error) {
	res, err := tx.StmtxContext(ctx, s.stmt).ExecContext(ctx, args...)
	return res, s.forget(err)
}

// forget drops a statement PostgreSQL refused as stale, so the next transaction prepares it
// afresh, and returns err.
func (s *InTx) forget(err error) error {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "0A000" {
		statements.CompareAndDelete(key{s.db, s.query}, s.stmt)
		_ = s.stmt.Close()
	}
	return err
}
