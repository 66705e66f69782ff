// Package db opens Boxoffice's PostgreSQL database and applies its migrations. Each service owns
// one schema (booking, payment, notification, ticket, web) and reads and writes only that one;
// the catalog schema is reference data every part may read.
package db

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // registers the "postgres" driver
	"github.com/pressly/goose/v3"
)

// DriverName is the database/sql driver every part uses.
const DriverName = "postgres"

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLockID serialises migrations when several processes start at once.
const migrateLockID = 7_243_001

// Open connects to PostgreSQL and checks that it answers. The pool is sized for a 2-core
// machine running every part in one process.
func Open(ctx context.Context, url string) (*sqlx.DB, error) {
	// binary_parameters lets lib/pq send a query with parameters in one round trip instead of
	// two (it no longer asks the server to describe the statement first): a seat decision went
	// from 3.5 to 2.7 ms. The price: []byte arguments travel as binary, so JSON for a jsonb
	// column must be passed as a string. A URL that names the setting keeps its own choice.
	url = withDefault(url, "binary_parameters", "yes")
	// Every hot statement is prepared once per connection and finds its rows by key, so its
	// plan should be made once and use the key's index, whatever the table's size when it was
	// made. PostgreSQL would re-plan most of them on every run instead (a generic plan for
	// "id = ANY($1)" looks dearer than one for the array at hand): at 100 bookings a second
	// planning was a third of the statements' time. And a plan made while a table is new and
	// nearly empty scans it whole, and keeps doing so as it grows: the web's stage statement
	// scanned web.bookings three times a call, 0.72 ms against 0.28 ms by index. So plans are
	// made once (force_generic_plan), and a table is scanned whole only when no index serves
	// the query (enable_seqscan=off makes that the planner's last resort, not a ban). A scan
	// the planner must still make then looks ten billion times dearer than it is, and would be
	// compiled to machine code first: jit=off (a count of an empty outbox took 106 ms, 83 of
	// them compiling; no query here is long enough to gain from it). These are sent as the
	// session's settings; a URL that names one keeps its own choice.
	url = withDefault(url, "plan_cache_mode", "force_generic_plan")
	url = withDefault(url, "enable_seqscan", "off")
	url = withDefault(url, "jit", "off")
	conn, err := sqlx.Open(DriverName, url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	conn.SetMaxOpenConns(20)
	conn.SetMaxIdleConns(20)
	conn.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := conn.PingContext(pingCtx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return conn, nil
}

// withDefault adds key=value to a connection URL's parameters unless the URL names key already.
// lib/pq sends parameters it does not know itself to the server as the session's settings.
func withDefault(url, key, value string) string {
	if strings.Contains(url, key+"=") {
		return url
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + key + "=" + value
}

// Migrate applies every pending migration, then runs after (the catalog seeder) while still
// holding the lock, so concurrent starts neither race nor seed twice.
func Migrate(ctx context.Context, conn *sqlx.DB, after func(context.Context, *sqlx.DB) error) error {
	lock, err := conn.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrateLockID); err != nil {
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	defer func() {
		_, _ = lock.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockID)
	}()

	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, conn.DB, sub)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if after != nil {
		if err := after(ctx, conn); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}
