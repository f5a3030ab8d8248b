package schemas_test

import (
	"context"
	"testing"

	"github.com/svcupdate/svcupdate/schemas"
)

// Release 1's outbox statements, verbatim: a worker of release 1 still
// runs them on the newer schema while a deploy rolls.
const (
	release1OutboxInsert = `
INSERT INTO notification_outbox (workflow_id, kind, slot_start, instance_id, recipients, subject, html_body, text_body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (workflow_id, kind, slot_start) DO NOTHING`
	release1OutboxLock = `
SELECT id, state, coalesce(message_id, '') FROM notification_outbox
WHERE workflow_id = $1 AND kind = $2 AND slot_start = $3
FOR UPDATE`
)

// Migration 004 adds the outbox's sequence and stays additive: rows
// written before it get sequence 0, and an older worker's insert, whose
// ON CONFLICT names the key (workflow_id, kind, slot_start), still finds
// that key.
func TestMigration004KeepsOlderWorkersOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, dbURL := migratedTo(t, 2)
	insert := func(kind string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, release1OutboxInsert, "service-update:a:9.2.0", kind, "2026-04-15T01:00:00Z", "a",
			[]string{"ada@contoso.example"}, "Update "+kind, "<p>"+kind+"</p>", kind); err != nil {
			t.Fatalf("release 1's insert of %q: %v", kind, err)
		}
	}
	insert("scheduled")
	if _, err := schemas.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	insert("scheduled") // a retry: nothing new
	insert("rescheduled")

	rows, err := db.QueryContext(ctx, "SELECT kind, sequence FROM notification_outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var kind string
		var sequence int
		if err := rows.Scan(&kind, &sequence); err != nil {
			t.Fatal(err)
		}
		got = append(got, kind)
		if sequence != 0 {
			t.Errorf("%s row has sequence %d, want 0", kind, sequence)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "scheduled" || got[1] != "rescheduled" {
		t.Fatalf("outbox kinds %v, want [scheduled rescheduled]", got)
	}
	var id int64
	var state, messageID string
	if err := db.QueryRowContext(ctx, release1OutboxLock, "service-update:a:9.2.0", "rescheduled", "2026-04-15T01:00:00Z").Scan(&id, &state, &messageID); err != nil || state != "pending" {
		t.Fatalf("release 1's lock: state %q, %v; want the pending row", state, err)
	}
}
