// Package dbtest gives each test a PostgreSQL database of its own on the real server that
// scripts/postgres.sh starts (or TEST_DATABASE_URL names), dropped when the test ends.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/boxoffice/boxoffice/db"
)

// DefaultURL is the private cluster of scripts/postgres.sh.
const DefaultURL = "postgres://boxoffice:boxoffice@127.0.0.1:55432/boxoffice?sslmode=disable"

// AdminURL is the server tests create their databases on. It must let its user CREATE DATABASE.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// NewURL creates an empty database and returns its URL. There is no skipping: a test that needs
// PostgreSQL and cannot reach it fails, with the command that starts it.
func NewURL(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := db.Open(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("PostgreSQL is needed for this test and did not answer at %s: %v\n(run `scripts/postgres.sh start`, or `make test` which does)", AdminURL(), err)
	}
	defer admin.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "bx_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := db.Open(ctx, AdminURL())
		if err != nil {
			tb.Logf("drop test database %s: %v", name, err)
			return
		}
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		tb.Fatalf("parse %s: %v", AdminURL(), err)
	}
	u.Path = "/" + name
	return u.String()
}

// New creates an empty database and connects to it.
func New(tb testing.TB) *sqlx.DB {
	tb.Helper()
	conn, err := db.Open(context.Background(), NewURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// NewMigrated creates a database with every migration applied and runs seed (if any) on it.
func NewMigrated(tb testing.TB, seed func(context.Context, *sqlx.DB) error) *sqlx.DB {
	tb.Helper()
	conn := New(tb)
	if err := db.Migrate(context.Background(), conn, seed); err != nil {
		tb.Fatal(err)
	}
	return conn
}
