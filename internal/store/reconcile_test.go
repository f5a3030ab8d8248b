package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// An update's whole life as the store sees it: booked by the rollout,
// recorded by its workflow, rescheduled, not approved (slots released),
// rescheduled late, cancelled (released). After every step that leaves the
// update at rest, each slot's counter equals the reservations open
// updates hold. (Between recording a final status and releasing the slots
// the check reports the update's places, as it should for a workflow that
// never gets to release them.)
func TestBookingsReconcileThroughALifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(2, 3))
	must := func(name string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	atRest := func(name string, err error) {
		t.Helper()
		must(name, err)
		storetest.CheckBookings(t, s)
	}
	release := func() error {
		_, err := s.ReleaseSlots(ctx, workflows.ReleaseSlotsInput{InstanceID: "inst-000", OfferedVersion: "9.2.0"})
		return err
	}
	_, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: "inst-000", Version: "9.2.0", SecondaryMinGap: time.Hour, Now: storetest.PeriodStart})
	atRest("rollout booking", err)
	_, err = s.RecordTransition(ctx, "l/1", storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled))
	atRest("scheduled", err)
	_, err = s.BookSlots(ctx, storetest.Booking("inst-000", 1, 3))
	atRest("reschedule", err)
	_, err = s.RecordTransition(ctx, "l/2", storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusNotApproved))
	must("not approved", err)
	atRest("released after not approved", release())
	_, err = s.BookSlots(ctx, storetest.Booking("inst-000", 3, 4))
	atRest("late reschedule", err)
	_, err = s.RecordTransition(ctx, "l/3", storetest.Transition("inst-000", workflows.StatusNotApproved, workflows.StatusApproved))
	atRest("approved by the reschedule", err)
	_, err = s.RecordTransition(ctx, "l/4", storetest.Transition("inst-000", workflows.StatusApproved, workflows.StatusCancelled))
	must("cancelled", err)
	if len(storetest.Mismatches(t, s)) != 2 {
		t.Errorf("a cancelled update that has not released yet: want its two slots reported")
	}
	atRest("released after cancel", release())
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 0, 0, 0, 0}) {
		t.Fatalf("usage at the end = %v", usage)
	}
}

// The reconciliation names each way bookkeeping goes wrong: a closed
// update that kept its places (a success that did not release its
// secondary), a booking no update recorded, a counter edited by hand.
func TestCheckBookingsNamesEveryMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(3, 3))
	for _, id := range []string{"inst-000", "inst-001"} {
		if _, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: id, Version: "9.2.0", SecondaryMinGap: time.Hour, Now: storetest.PeriodStart}); err != nil {
			t.Fatal(err)
		}
	}
	storetest.CheckBookings(t, s)
	if _, err := s.RecordTransition(ctx, "m/1", storetest.Transition("inst-000", workflows.StatusInProgress, workflows.StatusSucceeded)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-002", 3, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE slots SET booked = booked + 1 WHERE starts_at = $1", storetest.SlotStarts[2]); err != nil {
		t.Fatal(err)
	}
	got, err := s.CheckBookings(ctx, "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, m := range got {
		lines = append(lines, m.String())
	}
	want := []string{
		"the 9.2.0 slot in eu-west at 2027-03-06 22:00 UTC: booked 2, but open updates hold 1 reservation(s); held by no open update: service-update:inst-000:9.2.0 (Succeeded)",
		"the 9.2.0 slot in eu-west at 2027-03-13 22:00 UTC: booked 2, but open updates hold 1 reservation(s); held by no open update: service-update:inst-000:9.2.0 (Succeeded)",
		"the 9.2.0 slot in eu-west at 2027-03-20 22:00 UTC: booked 1, but open updates hold 0 reservation(s); slot_bookings has 0 row(s)",
		"the 9.2.0 slot in eu-west at 2027-03-27 22:00 UTC: booked 1, but open updates hold 0 reservation(s); held by no open update: service-update:inst-002:9.2.0 (no update recorded)",
		"the 9.2.0 slot in eu-west at 2027-04-03 22:00 UTC: booked 1, but open updates hold 0 reservation(s); held by no open update: service-update:inst-002:9.2.0 (no update recorded)",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("mismatches:\n%q\nwant\n%q", lines, want)
	}
	if other, err := s.CheckBookings(ctx, "9.3.0"); err != nil || len(other) != 0 {
		t.Fatalf("9.3.0 mismatches = %v, %v; want none", other, err)
	}
}

func TestSlotsListsTheUpdatesHoldingThem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(2, 3))
	for _, id := range []string{"inst-000", "inst-001"} {
		if _, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: id, Version: "9.2.0", SecondaryMinGap: time.Hour, Now: storetest.PeriodStart}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RecordTransition(ctx, "s/1", storetest.Transition("inst-000", workflows.StatusScheduled, workflows.StatusApproved)); err != nil {
		t.Fatal(err)
	}
	slots, err := s.Slots(ctx, "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != len(storetest.SlotStarts) {
		t.Fatalf("%d slots, want %d", len(slots), len(storetest.SlotStarts))
	}
	first := slots[0]
	first.ID = 0
	want := store.SlotRow{
		Release: "9.2.0", Region: "eu-west", Start: storetest.SlotStarts[0], Window: 12 * time.Hour, Capacity: 3, Booked: 2,
		Reservations: []store.Reservation{
			{WorkflowID: "service-update:inst-000:9.2.0", Role: workflows.SlotPrimary, Status: workflows.StatusApproved},
			{WorkflowID: "service-update:inst-001:9.2.0", Role: workflows.SlotPrimary, Status: workflows.StatusScheduled},
		},
	}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("first slot = %+v\nwant %+v", first, want)
	}
	if !first.Reservations[0].Open() || (store.Reservation{Status: workflows.StatusSucceeded}).Open() || (store.Reservation{}).Open() {
		t.Error("Open disagrees with the open statuses")
	}
	if len(slots[2].Reservations) != 0 || slots[2].Booked != 0 {
		t.Errorf("third slot = %+v, want it free", slots[2])
	}
	_, err = s.Slots(ctx, "8.0.0")
	wantErr(t, err, store.ErrNotFound, `release "8.0.0" does not exist; load it with the fleet file first`)
}
