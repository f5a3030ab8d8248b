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

// A held wave's update moved from a time takes the earliest free pair
// from it and gives its old places back; moved again from the same time
// it keeps its pair; with no pair left it keeps what it had.
func TestBookSlotsFrom(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(4, 1))
	storetest.Open(t, s, "inst-001")
	storetest.Open(t, s, "inst-002")
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-001", 0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-002", 2, 3)); err != nil {
		t.Fatal(err)
	}
	move := func(instance string, from time.Time) workflows.BookSlotsFromInput {
		return workflows.BookSlotsFromInput{InstanceID: instance, Region: "eu-west", OfferedVersion: "9.2.0", TargetVersion: "9.2.0",
			From: from, SecondaryMinGap: 24 * time.Hour, Until: storetest.PeriodEnd}
	}

	// From slot 2's start exactly: slot 2 and 3 are full (inst-002), so
	// slot 4 is the primary and no later slot is left for a secondary.
	_, err := s.BookSlotsFrom(ctx, move("inst-001", storetest.SlotStarts[2]))
	wantErr(t, err, store.ErrNoCapacity, `no free primary and secondary slot pair of 9.2.0 in region eu-west from 2027-03-20 22:00 UTC (secondary at least 24h after the primary window, both windows ending by 2027-05-01 00:00 UTC) for instance "inst-001"`)
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{1, 1, 1, 1, 0}) {
		t.Fatalf("usage after a refused move = %v, want the old bookings kept", usage)
	}

	// From slot 1's start: slot 1 is its own secondary, given back first,
	// so it becomes the primary; slot 4 the secondary.
	got, err := s.BookSlotsFrom(ctx, move("inst-001", storetest.SlotStarts[1]))
	if err != nil {
		t.Fatal(err)
	}
	want := workflows.BookSlotsFromResult{PrimaryStart: storetest.SlotStarts[1], PrimaryWindow: 12 * time.Hour,
		SecondaryStart: storetest.SlotStarts[4], SecondaryWindow: 12 * time.Hour}
	if got != want {
		t.Fatalf("moved to %+v, want %+v", got, want)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 1, 1, 1, 1}) {
		t.Fatalf("usage after the move = %v", usage)
	}
	again, err := s.BookSlotsFrom(ctx, move("inst-001", storetest.SlotStarts[1]))
	if err != nil || again != want {
		t.Fatalf("moved again = %+v, %v; want the same pair kept", again, err)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 1, 1, 1, 1}) {
		t.Fatalf("usage after moving again = %v", usage)
	}

	// A held pair whose secondary window ends after Until is moved too:
	// inst-002's (slots 2 and 3) to slot 0, given back by inst-001, and
	// slot 2, its own place given back.
	in := move("inst-002", storetest.SlotStarts[0])
	in.Until = storetest.SlotStarts[3]
	got, err = s.BookSlotsFrom(ctx, in)
	if err != nil || got.PrimaryStart != storetest.SlotStarts[0] || got.SecondaryStart != storetest.SlotStarts[2] {
		t.Fatalf("moved within Until to %+v, %v; want slots 0 and 2", got, err)
	}
	in.Until = storetest.SlotStarts[1]
	_, err = s.BookSlotsFrom(ctx, in)
	wantErr(t, err, store.ErrNoCapacity, `no free primary and secondary slot pair of 9.2.0 in region eu-west from 2027-03-06 22:00 UTC (secondary at least 24h after the primary window, both windows ending by 2027-03-13 22:00 UTC) for instance "inst-002"`)
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{1, 1, 1, 0, 1}) {
		t.Fatalf("usage at the end = %v", usage)
	}

	_, err = s.BookSlotsFrom(ctx, workflows.BookSlotsFromInput{InstanceID: "inst-001"})
	wantErr(t, err, store.ErrInvalidRequest, "book slots from a time: instanceId, region, offeredVersion, targetVersion and from required")
	storetest.CheckBookings(t, s)
}
