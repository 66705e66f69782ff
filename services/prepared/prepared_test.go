package prepared_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/boxoffice/boxoffice/db/dbtest"
	"github.com/boxoffice/boxoffice/services/prepared"
)

// TestStatementSurvivesASchemaChange: a process keeps its prepared statements while a newer one
// migrates the database; a statement whose result changed shape is prepared again, not failed.
func TestStatementSurvivesASchemaChange(t *testing.T) {
	conn := dbtest.NewMigrated(t, nil)
	ctx := context.Background()
	if _, err := conn.Exec(`CREATE TABLE things (a int); INSERT INTO things VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	type thing struct {
		A int           `db:"a"`
		B sql.NullInt64 `db:"b"`
	}
	var before []thing
	if err := prepared.Select(ctx, conn, &before, `SELECT * FROM things`); err != nil || len(before) != 1 {
		t.Fatalf("%v, %v", before, err)
	}
	if _, err := conn.Exec(`ALTER TABLE things ADD COLUMN b int DEFAULT 2`); err != nil {
		t.Fatal(err)
	}
	var after []thing
	if err := prepared.Select(ctx, conn, &after, `SELECT * FROM things`); err != nil {
		t.Fatalf("after the schema changed: %v", err)
	}
	if len(after) != 1 || after[0].B.Int64 != 2 {
		t.Errorf("after the schema changed: %+v, want the new column", after)
	}
}
