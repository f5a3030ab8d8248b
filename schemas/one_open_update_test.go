package schemas_test

import (
	"context"
	"database/sql"
	"maps"
	"slices"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/schemas"
)

// Migration 002 allows one open update per instance. Instances that have
// several open updates when it runs keep one, chosen by a fixed rule (one
// already executing, then a mandatory one, then the latest target), and
// the others are closed as Superseded with an audit row each.
func TestMigration002KeepsOneOpenUpdatePerInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dbURL := migratedTo(t, 1)
	// a: an optional 9.2.0 and a mandatory 9.3.0 update, both scheduled;
	// b: a 9.2.0 update executing and a mandatory 9.3.0 one scheduled;
	// c: one open update and a closed one.
	if _, err := db.ExecContext(ctx, `
INSERT INTO releases (version, name, ordinal) VALUES ('9.1.0', 'a', 1), ('9.2.0', 'b', 2), ('9.3.0', 'c', 3);
INSERT INTO tenants (id, name) VALUES ('t', 'T');
INSERT INTO instances (id, tenant_id, name, kind, region, time_zone, current_version)
SELECT id, 't', id, 'production', 'emea', 'UTC', '9.1.0' FROM unnest(ARRAY['a', 'b', 'c']) AS id;
INSERT INTO updates (workflow_id, instance_id, offered_version, target_version, current_version, mandatory, status,
                     primary_start, secondary_start, snapshot)
VALUES ('service-update:a:9.2.0', 'a', '9.2.0', '9.2.0', '9.1.0', false, 'Approved', now(), now(), '{}'),
       ('service-update:a:9.3.0', 'a', '9.3.0', '9.3.0', '9.1.0', true, 'Scheduled', now(), now(), '{}'),
       ('service-update:b:9.2.0', 'b', '9.2.0', '9.2.0', '9.1.0', false, 'InProgress', now(), now(), '{}'),
       ('service-update:b:9.3.0', 'b', '9.3.0', '9.3.0', '9.1.0', true, 'Scheduled', now(), now(), '{}'),
       ('service-update:c:9.2.0', 'c', '9.2.0', '9.2.0', '9.1.0', false, 'Failed', now(), now(), '{}'),
       ('service-update:c:9.3.0', 'c', '9.3.0', '9.3.0', '9.1.0', true, 'Approved', now(), now(), '{}')`); err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}

	statuses := map[string]string{}
	rows, err := db.QueryContext(ctx, "SELECT workflow_id, status FROM updates")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		statuses[id] = status
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"service-update:a:9.2.0": "Superseded", "service-update:a:9.3.0": "Scheduled",
		"service-update:b:9.2.0": "InProgress", "service-update:b:9.3.0": "Superseded",
		"service-update:c:9.2.0": "Failed", "service-update:c:9.3.0": "Approved",
	}
	if !maps.Equal(statuses, want) {
		t.Errorf("statuses after the migration = %v\nwant %v", statuses, want)
	}

	var audited []string
	rows, err = db.QueryContext(ctx, "SELECT workflow_id || ' ' || status_before || ' -> ' || status_after || ': ' || detail FROM audit_log ORDER BY workflow_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		audited = append(audited, line)
	}
	wantAudit := []string{
		"service-update:a:9.2.0 Approved -> Superseded: schema migration 002 allows one open update per instance; service-update:a:9.3.0 keeps it. Cancel this workflow if it still runs.",
		"service-update:b:9.3.0 Scheduled -> Superseded: schema migration 002 allows one open update per instance; service-update:b:9.2.0 keeps it. Cancel this workflow if it still runs.",
	}
	if !slices.Equal(audited, wantAudit) {
		t.Errorf("audit rows = %q\nwant %q", audited, wantAudit)
	}

	_, err = db.ExecContext(ctx, "UPDATE updates SET status = 'Approved' WHERE workflow_id = 'service-update:a:9.2.0'")
	if err == nil {
		t.Error("a second open update of instance a was accepted after the migration")
	}
}

// migratedTo is a new database with the migrations up to version applied,
// for tests of what a later migration does to data written before it.
func migratedTo(t *testing.T, version int64) (db *sql.DB, dbURL string) {
	t.Helper()
	dbURL = pgtest.NewEmptyDatabase(t)
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	provider, err := goose.NewProvider(goose.DialectPostgres, db, schemas.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.UpTo(context.Background(), version); err != nil {
		t.Fatal(err)
	}
	return db, dbURL
}
