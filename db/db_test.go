package db_test

import (
	"context"
	"strings"
	"testing"

	"github.com/boxoffice/boxoffice/db/dbtest"
)

// TestAScanTheIndexesCannotServeIsNotCompiled: a query that must read a table whole (the
// operations view counts each outbox) looks ten billion times dearer than it is to a planner
// told to avoid such scans, and must not be compiled to machine code for it: that took 83 ms
// for a count of an empty table.
func TestAScanTheIndexesCannotServeIsNotCompiled(t *testing.T) {
	ctx := context.Background()
	conn := dbtest.NewMigrated(t, nil)
	var plan string
	if err := conn.GetContext(ctx, &plan, `EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*), min(created_at) FROM web.outbox`); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, `"Seq Scan"`) {
		t.Fatalf("the count is not the whole-table scan this test is about: %s", plan)
	}
	if strings.Contains(plan, `"JIT"`) {
		t.Errorf("the count was compiled first: %s", plan)
	}
	var settings string
	if err := conn.GetContext(ctx, &settings, `SELECT current_setting('plan_cache_mode') || ' ' || current_setting('enable_seqscan')`); err != nil {
		t.Fatal(err)
	}
	if settings != "force_generic_plan off" {
		t.Errorf("connections are opened with plan_cache_mode, enable_seqscan = %s; want force_generic_plan off", settings)
	}
}
