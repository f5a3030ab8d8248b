package store_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

func TestRecordInstanceVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(1, 5))
	in := workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.2.0"}
	res, err := s.RecordInstanceVersion(ctx, in)
	if err != nil || res.PreviousVersion != "9.0.0" {
		t.Fatalf("record = %+v, %v; want previous 9.0.0", res, err)
	}
	// A retried activity: nothing changes, the version itself is reported.
	res, err = s.RecordInstanceVersion(ctx, in)
	if err != nil || res.PreviousVersion != "9.2.0" {
		t.Fatalf("record again = %+v, %v", res, err)
	}
	_, err = s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "ghost", Version: "9.2.0"})
	wantErr(t, err, store.ErrNotFound, `record instance version: instance "ghost" does not exist`)
	_, err = s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.9.9"})
	wantErr(t, err, store.ErrNotFound, `record version 9.9.9 on instance "inst-000": release "9.9.9" does not exist`)
}

// A late success of an older update (9.1.0 finishing after 9.3.0) must
// not move the instance back: versions only move forward, by release
// order, and a call that would not is a no-op that says so.
func TestRecordInstanceVersionOnlyMovesForward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(1, 5))
	res, err := s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.3.0"})
	if err != nil || res != (workflows.RecordVersionResult{PreviousVersion: "9.0.0"}) {
		t.Fatalf("record 9.3.0 = %+v, %v; want previous 9.0.0, recorded", res, err)
	}
	for _, older := range []string{"9.1.0", "9.2.0", "9.3.0"} {
		res, err := s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: older})
		if err != nil || res != (workflows.RecordVersionResult{PreviousVersion: "9.3.0", Unchanged: true}) {
			t.Errorf("record %s on an instance at 9.3.0 = %+v, %v; want unchanged at 9.3.0", older, res, err)
		}
	}
	var version string
	if err := tx.QueryRow(ctx, "SELECT current_version FROM instances WHERE id = 'inst-000'").Scan(&version); err != nil || version != "9.3.0" {
		t.Fatalf("instance runs %q (%v), want 9.3.0", version, err)
	}
}

func TestRecordTransitionAuditAndProjection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(3, 5))

	started := storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled)
	started.Action, started.Actor, started.Channel, started.Detail = "scheduled", workflows.ActorSystem, workflows.ChannelWorkflow, ""
	first, err := s.RecordTransition(ctx, "run-1/1", started)
	if err != nil {
		t.Fatal(err)
	}
	approved := storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusApproved)
	approved.Snapshot.ApprovedBy = "admin0@acme.example"
	approved.Operator, approved.Channel = "olga@provider.example", string(actor.ChannelOperatorCLI) // an operator acting for the admin
	approved.Snapshot.ApprovedAt = time.Date(2027, 3, 1, 9, 30, 0, 0, time.UTC)
	approved.Snapshot.Attempts = []workflows.Attempt{{Slot: workflows.SlotPrimary, Started: storetest.SlotStarts[0], Outcome: workflows.OutcomeFailed, Error: "disk full"}}
	second, err := s.RecordTransition(ctx, "run-1/2", approved)
	if err != nil {
		t.Fatal(err)
	}
	// The same activity retried: same row, nothing new.
	retried, err := s.RecordTransition(ctx, "run-1/2", approved)
	if err != nil || retried != second || second.AuditID <= first.AuditID {
		t.Fatalf("ids: first %d, second %d, retried %+v (%v)", first.AuditID, second.AuditID, retried, err)
	}
	if _, err := s.RecordTransition(ctx, "run-2/1", storetest.Transition("inst-001", workflows.StatusScheduled, workflows.StatusScheduled)); err != nil {
		t.Fatal(err)
	}

	log, err := s.AuditLog(ctx, "service-update:inst-000:9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 {
		t.Fatalf("audit log has %d rows, want 2: %+v", len(log), log)
	}
	got := log[1]
	got.At = time.Time{}
	want := store.AuditEntry{ID: second.AuditID, WorkflowID: "service-update:inst-000:9.2.0", InstanceID: "inst-000", Actor: "admin0@acme.example",
		Operator: "olga@provider.example", Channel: string(actor.ChannelOperatorCLI), Action: "approved", Detail: "looks good", StatusBefore: workflows.StatusScheduled, StatusAfter: workflows.StatusApproved}
	if !reflect.DeepEqual(got, want) || log[0].Detail != "" || log[0].Actor != workflows.ActorSystem || log[0].Operator != "" {
		t.Fatalf("audit log = %+v\nwant second %+v", log, want)
	}
	if err := execAside(t, tx, "UPDATE audit_log SET actor = 'forged'"); err == nil || !strings.Contains(err.Error(), "audit_log is append-only") {
		t.Fatalf("editing the audit log: %v, want refused", err)
	}

	all, err := s.ListUpdates(ctx, store.UpdateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("ListUpdates = %d rows, want 2", len(all))
	}
	row := all[0]
	row.UpdatedAt = time.Time{}
	wantRow := store.UpdateRow{WorkflowID: "service-update:inst-000:9.2.0", InstanceID: "inst-000", OfferedVersion: "9.2.0", TargetVersion: "9.2.0",
		CurrentVersion: "9.0.0", Mandatory: true, Status: workflows.StatusApproved, PrimaryStart: storetest.SlotStarts[0], SecondaryStart: storetest.SlotStarts[1],
		ApprovedBy: "admin0@acme.example", ApprovedAt: time.Date(2027, 3, 1, 9, 30, 0, 0, time.UTC), Attempts: 1, LastError: "disk full"}
	if !reflect.DeepEqual(row, wantRow) {
		t.Fatalf("row = %+v\nwant %+v", row, wantRow)
	}
	for _, tc := range []struct {
		filter store.UpdateFilter
		want   []string
	}{
		{store.UpdateFilter{Status: string(workflows.StatusScheduled)}, []string{"inst-001"}},
		{store.UpdateFilter{Version: "9.2.0", Status: string(workflows.StatusApproved)}, []string{"inst-000"}},
		{store.UpdateFilter{Version: "9.3.0"}, nil},
		{store.UpdateFilter{Limit: 1}, []string{"inst-000"}},
	} {
		rows, err := s.ListUpdates(ctx, tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rows {
			ids = append(ids, r.InstanceID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("ListUpdates(%+v) = %v, want %v", tc.filter, ids, tc.want)
		}
	}
	_, err = s.ListUpdates(ctx, store.UpdateFilter{Status: "Done"})
	wantErr(t, err, store.ErrInvalidRequest, `list updates: status "Done" is not one of Scheduled, Approved, InProgress, FallbackScheduled, Succeeded, Failed, NotApproved, Cancelled, Superseded`)

	// An admin chose 9.3.0: the update is listed under both versions.
	chosen := storetest.Transition("inst-001", workflows.StatusScheduled, workflows.StatusApproved)
	chosen.Snapshot.TargetVersion = "9.3.0"
	if _, err := s.RecordTransition(ctx, "run-2/2", chosen); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ListUpdates(ctx, store.UpdateFilter{Version: "9.3.0"})
	if err != nil || len(rows) != 1 || rows[0].InstanceID != "inst-001" {
		t.Fatalf("ListUpdates(9.3.0) = %+v, %v", rows, err)
	}
}

// A row that commits after the update ended (an attempt's start recorded
// beside the executor, on the path of releases 1 and 2, behind a
// cancellation) is audited but does not reopen the update; a Failed or
// NotApproved update is closed but may still get a new attempt.
func TestRecordTransitionKeepsAFinalStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(4, 5))
	statusOf := func(instance string) workflows.Status {
		t.Helper()
		rows, err := s.ListUpdates(ctx, store.UpdateFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.InstanceID == instance {
				return r.Status
			}
		}
		t.Fatalf("no updates row for %s", instance)
		return ""
	}
	for i, tc := range []struct {
		closedAs, late workflows.Status
		want           workflows.Status
	}{
		{workflows.StatusCancelled, workflows.StatusInProgress, workflows.StatusCancelled},
		{workflows.StatusSuperseded, workflows.StatusApproved, workflows.StatusSuperseded},
		{workflows.StatusSucceeded, workflows.StatusInProgress, workflows.StatusSucceeded},
		{workflows.StatusFailed, workflows.StatusApproved, workflows.StatusApproved},
	} {
		instance := fmt.Sprintf("inst-%03d", i)
		steps := []workflows.RecordTransitionInput{
			storetest.Transition(instance, workflows.StatusApproved, workflows.StatusInProgress),
			storetest.Transition(instance, workflows.StatusInProgress, tc.closedAs),
			storetest.Transition(instance, workflows.StatusApproved, tc.late),
		}
		for j, step := range steps {
			if _, err := s.RecordTransition(ctx, fmt.Sprintf("run-%d/%d", i, j), step); err != nil {
				t.Fatalf("%s, step %d: %v", instance, j, err)
			}
		}
		if got := statusOf(instance); got != tc.want {
			t.Errorf("%s closed as %s, then %s recorded: projection %s, want %s", instance, tc.closedAs, tc.late, got, tc.want)
		}
		log, err := s.AuditLog(ctx, workflows.WorkflowID(instance, "9.2.0"))
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != len(steps) || log[len(log)-1].StatusAfter != tc.late {
			t.Errorf("%s: audit log %+v, want %d rows ending with the late %s", instance, log, len(steps), tc.late)
		}
	}
}

func TestRecordTransitionErrorsLeaveNoAuditRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(1, 5))

	_, err := s.RecordTransition(ctx, "run-9/1", storetest.Transition("ghost", workflows.StatusScheduled, workflows.StatusApproved))
	wantErr(t, err, store.ErrNotFound, `update the projection of service-update:ghost:9.2.0 (instance "ghost"): refers to something that does not exist (Key (instance_id)=(ghost) is not present in table "instances".)`)

	// A second workflow ID for an update that already has one.
	if _, err := s.RecordTransition(ctx, "run-1/1", storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled)); err != nil {
		t.Fatal(err)
	}
	other := storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusApproved)
	other.Snapshot.WorkflowID = "manual-run"
	_, err = s.RecordTransition(ctx, "run-8/1", other)
	wantErr(t, err, store.ErrDuplicate, `update the projection of manual-run (instance "inst-000"): already exists (Key (instance_id, offered_version)=(inst-000, 9.2.0) already exists.)`)

	empty := storetest.Transition("inst-000", "", workflows.StatusApproved)
	empty.Actor = ""
	_, err = s.RecordTransition(ctx, "", empty)
	wantErr(t, err, store.ErrInvalidRequest, "record transition: idempotency key, actor, from required")

	for _, id := range []string{"service-update:ghost:9.2.0", "manual-run"} {
		log, err := s.AuditLog(ctx, id)
		if err != nil || len(log) != 0 {
			t.Fatalf("audit log of %s = %+v, %v; want no rows (rolled back)", id, log, err)
		}
	}
}
