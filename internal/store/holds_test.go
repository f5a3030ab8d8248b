package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// transitionTo is a transition of instance's update offered for version.
func transitionTo(instance, version string, to workflows.Status) workflows.RecordTransitionInput {
	in := storetest.Transition(instance, workflows.StatusScheduled, to)
	in.Snapshot.WorkflowID = workflows.WorkflowID(instance, version)
	in.Snapshot.OfferedVersion, in.Snapshot.TargetVersion = version, version
	return in
}

func wantHeld(t *testing.T, err error, holder store.Holder, msg string) {
	t.Helper()
	var held *store.HeldError
	if !errors.As(err, &held) || !errors.Is(err, store.ErrInstanceHeld) {
		t.Fatalf("err = %v, want a HeldError", err)
	}
	if held.Holder != holder || err.Error() != msg {
		t.Fatalf("held by %+v: %q\nwant %+v: %q", held.Holder, err, holder, msg)
	}
}

// The index of schemas/002 and the store agree on which statuses are
// open: while one update of an instance is open, a second may be recorded
// in a closed status only.
func TestOneOpenUpdatePerInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(1, 5))
	if _, err := s.RecordTransition(ctx, "first/1", transitionTo("inst-000", "9.2.0", workflows.StatusApproved)); err != nil {
		t.Fatal(err)
	}
	holder := store.Holder{WorkflowID: "service-update:inst-000:9.2.0", OfferedVersion: "9.2.0", TargetVersion: "9.2.0", Mandatory: true, Status: workflows.StatusApproved}
	if got, found, err := s.OpenUpdate(ctx, "inst-000"); err != nil || !found || got != holder {
		t.Fatalf("OpenUpdate = %+v, %t, %v; want %+v", got, found, err, holder)
	}
	closed := []workflows.Status{workflows.StatusSucceeded, workflows.StatusFailed, workflows.StatusNotApproved, workflows.StatusCancelled, workflows.StatusSuperseded}
	for i, status := range workflows.AllStatuses {
		_, err := s.RecordTransition(ctx, fmt.Sprintf("second/%d", i), transitionTo("inst-000", "9.3.0", status))
		if slices.Contains(closed, status) {
			if err != nil {
				t.Errorf("second update recorded as %s: %v", status, err)
			}
			continue
		}
		wantHeld(t, err, holder, `instance "inst-000" is held by open update service-update:inst-000:9.2.0 (Approved, mandatory)`)
	}
	if _, found, err := s.OpenUpdate(ctx, "inst-001"); err != nil || found {
		t.Fatalf("OpenUpdate of an instance without updates = %t, %v", found, err)
	}
}

// A rollout holds the instance from its booking on; a rollout of another
// version meets the open update and books nothing. Once the first update
// is final the second takes the instance, and then a late reschedule of
// the first is refused until the second closes.
func TestRolloutMeetsTheOpenUpdateOfAnotherVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(2, 5)
	fl.Releases[3].Slots = append(fl.Releases[3].Slots, fl.Releases[3].Slots[0])
	fl.Releases[3].Slots[1].Start = fl.Releases[3].Slots[0].Start.Add(7 * 24 * time.Hour)
	s, _ := setup(t, fl)
	now := storetest.PeriodStart
	book := func(version string) (workflows.Input, error) {
		return s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: "inst-001", Version: version, SecondaryMinGap: time.Hour, Now: now})
	}

	if _, err := book("9.2.0"); err != nil {
		t.Fatal(err)
	}
	claimed := store.Holder{WorkflowID: "service-update:inst-001:9.2.0", OfferedVersion: "9.2.0", TargetVersion: "9.2.0", Status: workflows.StatusScheduled}
	if got, found, err := s.OpenUpdate(ctx, "inst-001"); err != nil || !found || got != claimed {
		t.Fatalf("after booking 9.2.0, OpenUpdate = %+v, %t, %v; want %+v", got, found, err, claimed)
	}
	_, err := book("9.3.0")
	wantHeld(t, err, claimed, `instance "inst-001" is held by open update service-update:inst-001:9.2.0 (Scheduled)`)
	if b, err := s.Bookings(ctx, "inst-001", "9.3.0"); err != nil || len(b) != 0 {
		t.Fatalf("a held instance got bookings %+v (%v)", b, err)
	}
	// The workflow records its own state over the claim; an admin chose 9.3.0.
	optional := func(to workflows.Status) workflows.RecordTransitionInput {
		in := transitionTo("inst-001", "9.2.0", to)
		in.Snapshot.CurrentVersion, in.Snapshot.Mandatory = "9.1.0", false
		return in
	}
	approved := optional(workflows.StatusApproved)
	approved.Snapshot.TargetVersion = "9.3.0"
	if _, err := s.RecordTransition(ctx, "a/1", approved); err != nil {
		t.Fatal(err)
	}
	_, err = book("9.3.0")
	wantHeld(t, err, store.Holder{WorkflowID: "service-update:inst-001:9.2.0", OfferedVersion: "9.2.0", TargetVersion: "9.3.0", Status: workflows.StatusApproved},
		`instance "inst-001" is held by open update service-update:inst-001:9.2.0 (Approved, target 9.3.0)`)

	// Not approved at its slot: the 9.2.0 update releases its slots and no
	// longer holds the instance, so 9.3.0 (mandatory from 9.1.0) takes it.
	if _, err := s.RecordTransition(ctx, "a/2", optional(workflows.StatusNotApproved)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseSlots(ctx, workflows.ReleaseSlotsInput{InstanceID: "inst-001", OfferedVersion: "9.2.0"}); err != nil {
		t.Fatal(err)
	}
	if in, err := book("9.3.0"); err != nil || !in.Mandatory {
		t.Fatalf("9.3.0 after 9.2.0 was not approved = %+v, %v", in, err)
	}
	mandatory := store.Holder{WorkflowID: "service-update:inst-001:9.3.0", OfferedVersion: "9.3.0", TargetVersion: "9.3.0", Mandatory: true, Status: workflows.StatusScheduled}
	late := storetest.Booking("inst-001", 2, 3)
	_, err = s.BookSlots(ctx, late)
	wantHeld(t, err, mandatory, `instance "inst-001" is held by open update service-update:inst-001:9.3.0 (Scheduled, mandatory)`)
	_, err = s.RecordTransition(ctx, "a/3", optional(workflows.StatusApproved))
	wantHeld(t, err, mandatory, `instance "inst-001" is held by open update service-update:inst-001:9.3.0 (Scheduled, mandatory)`)

	// Once 9.3.0 is cancelled, the late reschedule books and holds again.
	if _, err := s.RecordTransition(ctx, "b/1", transitionTo("inst-001", "9.3.0", workflows.StatusCancelled)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseSlots(ctx, workflows.ReleaseSlotsInput{InstanceID: "inst-001", OfferedVersion: "9.3.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BookSlots(ctx, late); err != nil {
		t.Fatal(err)
	}
	reopened := store.Holder{WorkflowID: "service-update:inst-001:9.2.0", OfferedVersion: "9.2.0", TargetVersion: "9.2.0", Status: workflows.StatusApproved}
	if got, found, err := s.OpenUpdate(ctx, "inst-001"); err != nil || !found || got != reopened {
		t.Fatalf("after the late reschedule, OpenUpdate = %+v, %t, %v; want %+v", got, found, err, reopened)
	}
	storetest.CheckBookings(t, s)
}

// A re-run of a rollout for an instance that no longer needs the update,
// or that another update holds now, gives back what the earlier try
// booked: no workflow holds those reservations (#21).
func TestRolloutRerunReleasesWhatItCannotUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(3, 5))
	params := func(instance string) store.BookRolloutSlotsParams {
		return store.BookRolloutSlotsParams{InstanceID: instance, Version: "9.2.0", SecondaryMinGap: time.Hour, Now: storetest.PeriodStart}
	}
	for _, id := range []string{"inst-000", "inst-001"} {
		if _, err := s.BookRolloutSlots(ctx, params(id)); err != nil {
			t.Fatal(err)
		}
	}
	// inst-000 was updated by other means; inst-001 is held by an open
	// 9.3.0 update instead (a hand edit, or state from before schema 002).
	if _, err := tx.Exec(ctx, "UPDATE instances SET current_version = '9.2.0' WHERE id = 'inst-000'"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE updates SET status = 'Cancelled' WHERE workflow_id = 'service-update:inst-001:9.2.0'"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTransition(ctx, "c/1", transitionTo("inst-001", "9.3.0", workflows.StatusScheduled)); err != nil {
		t.Fatal(err)
	}

	_, err := s.BookRolloutSlots(ctx, params("inst-000"))
	wantErr(t, err, store.ErrNotEligible, `instance "inst-000" runs 9.2.0, which is not older than 9.2.0: no update needed`)
	_, err = s.BookRolloutSlots(ctx, params("inst-001"))
	if !errors.Is(err, store.ErrInstanceHeld) {
		t.Fatalf("inst-001 held by 9.3.0: %v", err)
	}
	for _, id := range []string{"inst-000", "inst-001"} {
		if b, err := s.Bookings(ctx, id, "9.2.0"); err != nil || len(b) != 0 {
			t.Errorf("%s keeps bookings %+v (%v) after a refused re-run", id, b, err)
		}
	}
	if got := storetest.Usage(t, s); !slices.Equal(got, []int{0, 0, 0, 0, 0}) {
		t.Errorf("usage = %v, want every place back", got)
	}
	if _, found, err := s.OpenUpdate(ctx, "inst-000"); err != nil || found {
		t.Errorf("inst-000 still held (%t, %v) after its claim was abandoned", found, err)
	}
}

// A start that failed for good gives back the slots and the claim.
func TestAbandonUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(1, 5))
	if _, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: "inst-000", Version: "9.2.0", SecondaryMinGap: time.Hour, Now: storetest.PeriodStart}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{2, 0} {
		released, err := s.AbandonUpdate(ctx, "inst-000", "9.2.0")
		if err != nil || released != want {
			t.Fatalf("abandon #%d = %d, %v; want %d released", i+1, released, err, want)
		}
	}
	if _, found, err := s.OpenUpdate(ctx, "inst-000"); err != nil || found {
		t.Fatalf("inst-000 still held (%t, %v) after its update was abandoned", found, err)
	}
	if got := storetest.Usage(t, s); !slices.Equal(got, []int{0, 0, 0, 0, 0}) {
		t.Errorf("usage = %v, want every place back", got)
	}
	storetest.CheckBookings(t, s)
	_, err := s.AbandonUpdate(ctx, "", "9.2.0")
	wantErr(t, err, store.ErrInvalidRequest, "abandon update: instance ID and version required")
}
