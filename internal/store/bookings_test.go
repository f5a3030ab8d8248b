package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

func TestBookSlotsBooksRebooksAndIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(2, 5))
	storetest.Open(t, s, "inst-000")

	first, err := s.BookSlots(ctx, storetest.Booking("inst-000", 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{1, 1, 0, 0, 0}) {
		t.Fatalf("after booking: usage %v", got)
	}
	again, err := s.BookSlots(ctx, storetest.Booking("inst-000", 0, 1))
	if err != nil || again != first {
		t.Fatalf("booking again = %+v, %v; want %+v", again, err, first)
	}
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{1, 1, 0, 0, 0}) {
		t.Fatalf("after booking again: usage %v", got)
	}

	// The old secondary becomes the primary: it keeps its one place.
	moved, err := s.BookSlots(ctx, storetest.Booking("inst-000", 1, 3))
	if err != nil {
		t.Fatal(err)
	}
	if moved.PrimarySlotID != first.SecondarySlotID {
		t.Fatalf("rebooked primary = slot %d, want %d", moved.PrimarySlotID, first.SecondarySlotID)
	}
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{0, 1, 0, 1, 0}) {
		t.Fatalf("after rebooking: usage %v", got)
	}
	bookings, err := s.Bookings(ctx, "inst-000", "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.BookingRow{
		{Role: workflows.SlotPrimary, SlotID: moved.PrimarySlotID, Release: "9.2.0", Start: storetest.SlotStarts[1], WorkflowID: "service-update:inst-000:9.2.0"},
		{Role: workflows.SlotSecondary, SlotID: moved.SecondarySlotID, Release: "9.2.0", Start: storetest.SlotStarts[3], WorkflowID: "service-update:inst-000:9.2.0"},
	}
	if !reflect.DeepEqual(bookings, want) {
		t.Fatalf("bookings = %+v\nwant %+v", bookings, want)
	}

	// An admin chose the later release 9.3.0 (only one slot there, so the
	// secondary stays a 9.3.0 slot that does not exist: refused, nothing moves).
	later := storetest.Booking("inst-000", 0, 1)
	later.TargetVersion = "9.3.0"
	later.PrimaryStart = time.Date(2027, 9, 4, 22, 0, 0, 0, time.UTC)
	if _, err := s.BookSlots(ctx, later); !errors.Is(err, store.ErrSlotNotOffered) {
		t.Fatalf("later target with missing secondary: %v", err)
	}
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{0, 1, 0, 1, 0}) {
		t.Fatalf("after refused rebooking: usage %v", got)
	}
	storetest.CheckBookings(t, s)
}

func TestBookSlotsErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(3, 1)
	s, _ := setup(t, fl)
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-000", 0, 1)); err != nil {
		t.Fatal(err)
	}
	notOffered := storetest.Booking("inst-001", 2, 3)
	notOffered.PrimaryStart = storetest.SlotStarts[2].Add(time.Hour)
	wrongRegion := storetest.Booking("inst-001", 2, 3)
	wrongRegion.Region = "us-east"
	missing := storetest.Booking("inst-001", 2, 3)
	missing.Region, missing.TargetVersion = "", ""
	cases := []struct {
		name     string
		in       workflows.BookSlotsInput
		sentinel error
		msg      string
	}{
		{"full primary", storetest.Booking("inst-001", 0, 2), store.ErrSlotFull,
			"the 9.2.0 slot in eu-west at 2027-03-06 22:00 UTC is full: all 1 places are booked"},
		{"full secondary", storetest.Booking("inst-001", 2, 1), store.ErrSlotFull,
			"the 9.2.0 slot in eu-west at 2027-03-13 22:00 UTC is full: all 1 places are booked"},
		{"start not offered", notOffered, store.ErrSlotNotOffered,
			"release 9.2.0 offers no slot in eu-west starting 2027-03-20 23:00 UTC (the next with free places start 2027-03-20 22:00 UTC, 2027-03-27 22:00 UTC, 2027-04-03 22:00 UTC)"},
		{"region not offered", wrongRegion, store.ErrSlotNotOffered,
			"release 9.2.0 offers no slot in us-east starting 2027-03-20 22:00 UTC (none has free places)"},
		{"unknown instance", storetest.Booking("ghost", 2, 3), store.ErrNotFound,
			`record the bookings of instance "ghost" for 9.2.0: refers to something that does not exist (Key (instance_id)=(ghost) is not present in table "instances".)`},
		{"same slot twice", storetest.Booking("inst-001", 2, 2), store.ErrInvalidRequest,
			"book slots: primary and secondary are the same slot (2027-03-20 22:00 UTC); the secondary must be a later one"},
		{"fields missing", missing, store.ErrInvalidRequest, "book slots: region, targetVersion required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.BookSlots(ctx, tc.in)
			wantErr(t, err, tc.sentinel, tc.msg)
		})
	}
	// A failed rebooking keeps the update's previous reservations.
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-000", 2, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-002", 0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-000", 0, 4)); !errors.Is(err, store.ErrSlotFull) {
		t.Fatalf("rebook onto a full slot: %v", err)
	}
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{1, 1, 1, 1, 0}) {
		t.Fatalf("usage = %v", got)
	}
}

func TestReleaseSlotsIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(2, 5))
	for _, id := range []string{"inst-000", "inst-001"} {
		storetest.Open(t, s, id)
		if _, err := s.BookSlots(ctx, storetest.Booking(id, 0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	in := workflows.ReleaseSlotsInput{InstanceID: "inst-000", OfferedVersion: "9.2.0"}
	for i, want := range []int{2, 0} {
		res, err := s.ReleaseSlots(ctx, in)
		if err != nil || res.Released != want {
			t.Fatalf("release #%d = %+v, %v; want %d released", i+1, res, err, want)
		}
	}
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{1, 1, 0, 0, 0}) {
		t.Fatalf("usage = %v", got)
	}
	storetest.CheckBookings(t, s) // inst-000's update is open, and holds nothing now
	_, err := s.ReleaseSlots(ctx, workflows.ReleaseSlotsInput{InstanceID: "inst-000"})
	wantErr(t, err, store.ErrInvalidRequest, "release slots: instanceId and offeredVersion required")
}
