// Package storetest is the fleet the tests of the store and of its callers
// load, and helpers to book and inspect it.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// The test fleet: four releases (the last two with periods and slots), one
// tenant, instances on 9.0.0 (n-2 for 9.2.0) and 9.1.0 (n-1).
var (
	PeriodStart = time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)
	PeriodEnd   = time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC)
	// SlotStarts are the weekly eu-west slots of 9.2.0.
	SlotStarts = []time.Time{
		time.Date(2027, 3, 6, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 13, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 20, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 27, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 4, 3, 22, 0, 0, 0, time.UTC),
	}
)

// Fleet builds a valid fleet with the given instances (IDs inst-000 ...)
// and capacity per 9.2.0 slot; even-numbered instances run 9.0.0, odd ones
// 9.1.0, every tenth is a sandbox.
func Fleet(instances, capacity int) *fleet.Fleet {
	fl := &fleet.Fleet{
		Releases: []fleet.Release{
			{Version: "9.0.0", Name: "Spring '26", Order: 10},
			{Version: "9.1.0", Name: "Autumn '26", Order: 20},
			{Version: "9.2.0", Name: "Spring '27", Order: 30, PeriodStart: PeriodStart, PeriodEnd: PeriodEnd},
			{Version: "9.3.0", Name: "Autumn '27", Order: 40,
				PeriodStart: time.Date(2027, 8, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC),
				Slots: []fleet.Slot{{Region: "eu-west", Start: time.Date(2027, 9, 4, 22, 0, 0, 0, time.UTC), Window: fleet.Duration(12 * time.Hour), Capacity: 10}}},
		},
		Tenants: []fleet.Tenant{{ID: "acme", Name: "Acme Corp"}},
	}
	for _, start := range SlotStarts {
		fl.Releases[2].Slots = append(fl.Releases[2].Slots,
			fleet.Slot{Region: "eu-west", Start: start, Window: fleet.Duration(12 * time.Hour), Capacity: capacity})
	}
	for i := range instances {
		in := fleet.Instance{
			ID: fmt.Sprintf("inst-%03d", i), Tenant: "acme", Name: fmt.Sprintf("Instance %d", i), Kind: fleet.KindProduction,
			Region: "eu-west", TimeZone: "Europe/Berlin", Version: "9.0.0",
			Admins: []string{fmt.Sprintf("admin%d@acme.example", i)}, Users: []string{"user@acme.example"},
		}
		if i%2 == 1 {
			in.Version = "9.1.0"
		}
		if i%10 == 0 {
			in.Kind = fleet.KindSandbox
		}
		fl.Instances = append(fl.Instances, in)
	}
	return fl
}

// Load returns a store on db loaded with fl.
func Load(t testing.TB, db store.DBTX, fl *fleet.Fleet) *store.Store {
	t.Helper()
	s := store.New(db)
	if _, err := s.UpsertFleet(context.Background(), fl); err != nil {
		t.Fatalf("UpsertFleet: %v", err)
	}
	return s
}

// Booking is the BookSlotsInput of instance for 9.2.0 in slots p and s
// (indexes into SlotStarts).
func Booking(instance string, p, s int) workflows.BookSlotsInput {
	return workflows.BookSlotsInput{
		WorkflowID: workflows.WorkflowID(instance, "9.2.0"), InstanceID: instance, Region: "eu-west",
		OfferedVersion: "9.2.0", TargetVersion: "9.2.0",
		PrimaryStart: SlotStarts[p], SecondaryStart: SlotStarts[s],
	}
}

// Transition is a RecordTransitionInput of instance's 9.2.0 update.
func Transition(instance string, from, to workflows.Status) workflows.RecordTransitionInput {
	return workflows.RecordTransitionInput{
		Actor: "admin0@acme.example", Channel: workflows.ChannelUpdate, Action: "approved", From: from, Detail: "looks good",
		Snapshot: workflows.StatusView{
			WorkflowID: workflows.WorkflowID(instance, "9.2.0"), InstanceID: instance, TenantID: "acme",
			CurrentVersion: "9.0.0", OfferedVersion: "9.2.0", TargetVersion: "9.2.0", Mandatory: true, Status: to,
			Primary:   workflows.Window{Start: SlotStarts[0], End: SlotStarts[0].Add(12 * time.Hour)},
			Secondary: workflows.Window{Start: SlotStarts[1], End: SlotStarts[1].Add(12 * time.Hour)},
		},
	}
}

// Usage returns booked counts of the 9.2.0 slots (by start) and fails the
// test when a counter disagrees with its reservations.
func Usage(t testing.TB, s *store.Store) []int {
	t.Helper()
	rows, err := s.SlotUsage(context.Background(), "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	var booked []int
	for _, r := range rows {
		if r.Booked != r.Reservations || r.Booked > r.Capacity {
			t.Errorf("slot %d at %s: booked %d, reservations %d, capacity %d", r.ID, r.Start, r.Booked, r.Reservations, r.Capacity)
		}
		booked = append(booked, r.Booked)
	}
	return booked
}

// CheckBookings fails the test when a slot's booked counter differs from
// the reservations open updates hold in it.
func CheckBookings(t testing.TB, s *store.Store) {
	t.Helper()
	for _, m := range Mismatches(t, s) {
		t.Errorf("bookings out of step: %s", m)
	}
}

// Mismatches returns what store.CheckBookings finds over every release.
func Mismatches(t testing.TB, s *store.Store) []store.BookingMismatch {
	t.Helper()
	mismatches, err := s.CheckBookings(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return mismatches
}

// Open records instance's 9.2.0 update as Scheduled, the row a running
// workflow has written before it books slots itself.
func Open(t testing.TB, s *store.Store, instance string) {
	t.Helper()
	in := Transition(instance, workflows.StatusScheduled, workflows.StatusScheduled)
	if _, err := s.RecordTransition(context.Background(), "open/"+instance, in); err != nil {
		t.Fatal(err)
	}
}
