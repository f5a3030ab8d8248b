package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// Each transition withdraws its workflow's queued reminders. A rollout
// queues reminders faster than Postgres refreshes its statistics; the
// withdrawal must then still read only the workflow's rows, never the
// queue of the whole fleet (which cost 209 ms a transition at 300,000).
func TestWithdrawingRemindersReadsOnlyTheWorkflowsRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, tx := setup(t, storetest.Fleet(2, 2))
	// 40,000 queued reminders of 10,000 workflows, never analyzed.
	if _, err := tx.Exec(ctx, `
INSERT INTO notice_queue (workflow_id, instance_id, kind, slot_start, due_at, next_attempt_at, notice)
SELECT 'service-update:scale-' || (n / 4) || ':9.2.0', 'inst-000', 'reminder-' || (n % 4) || 'd',
       '2027-03-06T22:00:00Z', now() + make_interval(days => 1 + n % 4), now() + make_interval(days => 1 + n % 4), '{}'
FROM generate_series(1, 40000) AS n`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, "EXPLAIN "+store.WithdrawRemindersSQL, "service-update:scale-5000:9.2.0", time.Now(), string(workflows.NoticeDayOf))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines, "\n")
	if !strings.Contains(text, "notice_queue_workflow_queued_idx") || strings.Contains(text, "notice_queue_next_idx") {
		t.Errorf("the withdrawal's plan reads more than the workflow's queued rows:\n%s", text)
	}
}
