package activities

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/workflows"
)

// The test fleet: four releases (the last two with periods and slots), one
// tenant, instances on 9.0.0 (n-2 for 9.2.0) and 9.1.0 (n-1).
var (
	storeTestPeriodStart = time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)
	storeTestPeriodEnd   = time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC)
	// storeTestSlotStarts are the weekly eu-west slots of 9.2.0.
	storeTestSlotStarts = []time.Time{
		time.Date(2027, 3, 6, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 13, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 20, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 3, 27, 22, 0, 0, 0, time.UTC),
		time.Date(2027, 4, 3, 22, 0, 0, 0, time.UTC),
	}
)

// storeTestFleet builds a valid fleet with the given instances (IDs
// inst-000 ...) and capacity per 9.2.0 slot; even-numbered instances run
// 9.0.0, odd ones 9.1.0, every tenth is a sandbox.
func storeTestFleet(instances, capacity int) *fleet.Fleet {
	fl := &fleet.Fleet{
		Releases: []fleet.Release{
			{Version: "9.0.0", Name: "Spring '26", Order: 10},
			{Version: "9.1.0", Name: "Autumn '26", Order: 20},
			{Version: "9.2.0", Name: "Spring '27", Order: 30, PeriodStart: storeTestPeriodStart, PeriodEnd: storeTestPeriodEnd},
			{Version: "9.3.0", Name: "Autumn '27", Order: 40,
				PeriodStart: time.Date(2027, 8, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC),
				Slots: []fleet.Slot{{Region: "eu-west", Start: time.Date(2027, 9, 4, 22, 0, 0, 0, time.UTC), Window: fleet.Duration(12 * time.Hour), Capacity: 10}}},
		},
		Tenants: []fleet.Tenant{{ID: "acme", Name: "Acme Corp"}},
	}
	for _, start := range storeTestSlotStarts {
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

// storeNewTestStore returns a store on a fresh database loaded with fl.
func storeNewTestStore(t testing.TB, fl *fleet.Fleet) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t)
	s := NewStore(pool)
	if _, err := s.UpsertFleet(context.Background(), fl); err != nil {
		t.Fatalf("UpsertFleet: %v", err)
	}
	return s, pool
}

// storeBooking is the BookSlotsInput of instance for 9.2.0 in slots p and s
// (indexes into storeTestSlotStarts).
func storeBooking(instance string, p, s int) workflows.BookSlotsInput {
	return workflows.BookSlotsInput{
		WorkflowID: workflows.WorkflowID(instance, "9.2.0"), InstanceID: instance, Region: "eu-west",
		OfferedVersion: "9.2.0", TargetVersion: "9.2.0",
		PrimaryStart: storeTestSlotStarts[p], SecondaryStart: storeTestSlotStarts[s],
	}
}

// storeUsage returns booked counts of the 9.2.0 slots (by start) and fails
// the test when a counter disagrees with its reservations.
func storeUsage(t testing.TB, s *Store) []int {
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

func storeWantErr(t *testing.T, err, sentinel error, msg string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	if err.Error() != msg {
		t.Fatalf("message = %q\nwant      %q", err.Error(), msg)
	}
}

func TestUpsertFleetLoadsEverythingAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s := NewStore(pgtest.NewPool(t))
	fl := storeTestFleet(3, 5)
	fl.Instances[1].ExtraRecipients = []string{"changes@acme.example"}

	first, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatal(err)
	}
	want := FleetLoadReport{
		Releases: FleetLoadCounts{Inserted: 4}, Slots: FleetLoadCounts{Inserted: 6}, Tenants: FleetLoadCounts{Inserted: 1},
		Instances: FleetLoadCounts{Inserted: 3}, RecipientsAdded: 7,
	}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("first load = %+v\nwant %+v", first, want)
	}
	second, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatal(err)
	}
	want = FleetLoadReport{
		Releases: FleetLoadCounts{Unchanged: 4}, Slots: FleetLoadCounts{Unchanged: 6}, Tenants: FleetLoadCounts{Unchanged: 1},
		Instances: FleetLoadCounts{Unchanged: 3},
	}
	if !reflect.DeepEqual(second, want) {
		t.Fatalf("second load = %+v\nwant %+v", second, want)
	}

	got, err := s.Instance(ctx, "inst-001")
	if err != nil {
		t.Fatal(err)
	}
	wantInst := InstanceRecipients{CurrentVersion: "9.1.0", Admins: []string{"admin1@acme.example"},
		Users: []string{"user@acme.example"}, Extra: []string{"changes@acme.example"}}
	if !reflect.DeepEqual(got, wantInst) {
		t.Fatalf("Instance = %+v, want %+v", got, wantInst)
	}
	usage, err := s.SlotUsage(ctx, "9.3.0")
	if err != nil {
		t.Fatal(err)
	}
	wantUsage := []SlotUsageRow{{ID: usage[0].ID, Release: "9.3.0", Region: "eu-west", Start: time.Date(2027, 9, 4, 22, 0, 0, 0, time.UTC),
		Window: 12 * time.Hour, Capacity: 10}}
	if !reflect.DeepEqual(usage, wantUsage) {
		t.Fatalf("SlotUsage = %+v, want %+v", usage, wantUsage)
	}
	if _, err := s.Instance(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Instance(nobody) = %v, want ErrNotFound", err)
	}
}

func TestUpsertFleetReportsChangesAndAdminChanges(t *testing.T) {
	ctx := context.Background()
	fl := storeTestFleet(3, 5)
	s, _ := storeNewTestStore(t, fl)

	fl.Tenants[0].Name = "Acme Corporation"
	fl.Releases[2].Slots[0].Capacity = 7
	fl.Releases[2].Slots[1].Window = fleet.Duration(6 * time.Hour)
	// Same admins in another case and order: no change for the workflow.
	fl.Instances[0].Admins = []string{"ADMIN0@acme.example"}
	fl.Instances[1].Admins = []string{"admin1@acme.example", "deputy@acme.example"}
	fl.Instances[2].Users = nil
	fl.Instances = append(fl.Instances, fleet.Instance{ID: "new", Tenant: "acme", Name: "New", Kind: fleet.KindSandbox,
		Region: "eu-west", TimeZone: "UTC", Version: "9.1.0", Admins: []string{"new@acme.example"}})

	report, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatal(err)
	}
	want := FleetLoadReport{
		Releases: FleetLoadCounts{Unchanged: 4}, Slots: FleetLoadCounts{Updated: 2, Unchanged: 4}, Tenants: FleetLoadCounts{Updated: 1},
		Instances: FleetLoadCounts{Inserted: 1, Unchanged: 3}, RecipientsAdded: 2, RecipientsRemoved: 1,
		AdminChanges: []AdminChange{{InstanceID: "inst-001", Admins: []string{"admin1@acme.example", "deputy@acme.example"}}},
	}
	if !reflect.DeepEqual(report, want) {
		t.Fatalf("report = %+v\nwant %+v", report, want)
	}
	got, err := s.Instance(ctx, "inst-000")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Admins, []string{"ADMIN0@acme.example"}) {
		t.Fatalf("admins of inst-000 = %v, want the file's spelling", got.Admins)
	}
	got, err = s.Instance(ctx, "inst-002")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Users) != 0 {
		t.Fatalf("users of inst-002 = %v, want none (removed from the file)", got.Users)
	}
}

func TestUpsertFleetRefusesCapacityBelowBookings(t *testing.T) {
	ctx := context.Background()
	fl := storeTestFleet(3, 5)
	s, _ := storeNewTestStore(t, fl)
	for _, id := range []string{"inst-000", "inst-001"} {
		if _, err := s.BookSlots(ctx, storeBooking(id, 0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	fl.Releases[2].Slots[0].Capacity = 1
	fl.Releases[2].Slots[1].Capacity = 0
	fl.Tenants[0].Name = "Renamed"
	_, err := s.UpsertFleet(ctx, fl)
	storeWantErr(t, err, ErrCapacityBelowBookings, "load slots: the 9.2.0 slot in eu-west at 2027-03-06 22:00 UTC holds 2 bookings, the file gives it capacity 1; "+
		"the 9.2.0 slot in eu-west at 2027-03-13 22:00 UTC holds 2 bookings, the file gives it capacity 0; "+
		"keep each capacity at or above its bookings (instances can be moved by rescheduling)")
	// Refused whole: nothing of the file was applied.
	if got := storeUsage(t, s); !reflect.DeepEqual(got, []int{2, 2, 0, 0, 0}) {
		t.Fatalf("usage = %v", got)
	}
	usage, err := s.SlotUsage(ctx, "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if usage[0].Capacity != 5 {
		t.Fatalf("capacity = %d after a refused load, want 5", usage[0].Capacity)
	}
	fl.Tenants[0].Name = "Acme Corp"
	fl.Releases[2].Slots[0].Capacity = 2 // equal to the bookings is fine
	fl.Releases[2].Slots[1].Capacity = 2
	if _, err := s.UpsertFleet(ctx, fl); err != nil {
		t.Fatalf("capacity equal to bookings: %v", err)
	}
}

func TestUpsertFleetNeverMovesAnInstanceBackwards(t *testing.T) {
	ctx := context.Background()
	fl := storeTestFleet(2, 5)
	s, _ := storeNewTestStore(t, fl)
	if _, err := s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.2.0"}); err != nil {
		t.Fatal(err)
	}
	fl.Instances[1].Version = "9.2.0" // the file may move an instance forward
	report, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatal(err)
	}
	wantKept := []FleetKeptVersion{{InstanceID: "inst-000", FileVersion: "9.0.0", CurrentVersion: "9.2.0"}}
	if !reflect.DeepEqual(report.KeptVersions, wantKept) || report.Instances != (FleetLoadCounts{Updated: 1, Unchanged: 1}) {
		t.Fatalf("report = %+v", report)
	}
	for id, want := range map[string]string{"inst-000": "9.2.0", "inst-001": "9.2.0"} {
		got, err := s.Instance(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.CurrentVersion != want {
			t.Errorf("%s runs %s, want %s", id, got.CurrentVersion, want)
		}
	}
}

func TestUpsertFleetReleaseOrders(t *testing.T) {
	ctx := context.Background()
	fl := storeTestFleet(1, 5)
	s, _ := storeNewTestStore(t, fl)

	// Swapping two orders in one file is fine (the constraint is deferred).
	fl.Releases[2].Order, fl.Releases[3].Order = 40, 30
	report, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatalf("swap orders: %v", err)
	}
	if report.Releases != (FleetLoadCounts{Updated: 2, Unchanged: 2}) {
		t.Fatalf("releases = %+v", report.Releases)
	}

	// A release dropped from the file keeps its order; giving that order to
	// another release is refused with both named.
	fl.Releases = fl.Releases[1:]
	fl.Releases[0].Order = 10
	_, err = s.UpsertFleet(ctx, fl)
	storeWantErr(t, err, ErrDuplicate, "load releases: release 9.0.0 (loaded earlier, not in this file) has order 10, which the file gives to 9.1.0; list every release in the file with its order")
}

func TestBookSlotsBooksRebooksAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s, _ := storeNewTestStore(t, storeTestFleet(2, 5))

	first, err := s.BookSlots(ctx, storeBooking("inst-000", 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := storeUsage(t, s); !reflect.DeepEqual(got, []int{1, 1, 0, 0, 0}) {
		t.Fatalf("after booking: usage %v", got)
	}
	again, err := s.BookSlots(ctx, storeBooking("inst-000", 0, 1))
	if err != nil || again != first {
		t.Fatalf("booking again = %+v, %v; want %+v", again, err, first)
	}
	if got := storeUsage(t, s); !reflect.DeepEqual(got, []int{1, 1, 0, 0, 0}) {
		t.Fatalf("after booking again: usage %v", got)
	}

	// The old secondary becomes the primary: it keeps its one place.
	moved, err := s.BookSlots(ctx, storeBooking("inst-000", 1, 3))
	if err != nil {
		t.Fatal(err)
	}
	if moved.PrimarySlotID != first.SecondarySlotID {
		t.Fatalf("rebooked primary = slot %d, want %d", moved.PrimarySlotID, first.SecondarySlotID)
	}
	if got := storeUsage(t, s); !reflect.DeepEqual(got, []int{0, 1, 0, 1, 0}) {
		t.Fatalf("after rebooking: usage %v", got)
	}
	bookings, err := s.Bookings(ctx, "inst-000", "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	want := []BookingRow{
		{Role: workflows.SlotPrimary, SlotID: moved.PrimarySlotID, Release: "9.2.0", Start: storeTestSlotStarts[1], WorkflowID: "service-update:inst-000:9.2.0"},
		{Role: workflows.SlotSecondary, SlotID: moved.SecondarySlotID, Release: "9.2.0", Start: storeTestSlotStarts[3], WorkflowID: "service-update:inst-000:9.2.0"},
	}
	if !reflect.DeepEqual(bookings, want) {
		t.Fatalf("bookings = %+v\nwant %+v", bookings, want)
	}

	// An admin chose the later release 9.3.0 (only one slot there, so the
	// secondary stays a 9.3.0 slot that does not exist: refused, nothing moves).
	later := storeBooking("inst-000", 0, 1)
	later.TargetVersion = "9.3.0"
	later.PrimaryStart = time.Date(2027, 9, 4, 22, 0, 0, 0, time.UTC)
	if _, err := s.BookSlots(ctx, later); !errors.Is(err, ErrSlotNotOffered) {
		t.Fatalf("later target with missing secondary: %v", err)
	}
	if got := storeUsage(t, s); !reflect.DeepEqual(got, []int{0, 1, 0, 1, 0}) {
		t.Fatalf("after refused rebooking: usage %v", got)
	}
}

func TestBookSlotsErrors(t *testing.T) {
	ctx := context.Background()
	fl := storeTestFleet(3, 1)
	s, _ := storeNewTestStore(t, fl)
	if _, err := s.BookSlots(ctx, storeBooking("inst-000", 0, 1)); err != nil {
		t.Fatal(err)
	}
	notOffered := storeBooking("inst-001", 2, 3)
	notOffered.PrimaryStart = storeTestSlotStarts[2].Add(time.Hour)
	wrongRegion := storeBooking("inst-001", 2, 3)
	wrongRegion.Region = "us-east"
	missing := storeBooking("inst-001", 2, 3)
	missing.Region, missing.TargetVersion = "", ""
	cases := []struct {
		name     string
		in       workflows.BookSlotsInput
		sentinel error
		msg      string
	}{
		{"full primary", storeBooking("inst-001", 0, 2), ErrSlotFull,
			"the 9.2.0 slot in eu-west at 2027-03-06 22:00 UTC is full: all 1 places are booked"},
		{"full secondary", storeBooking("inst-001", 2, 1), ErrSlotFull,
			"the 9.2.0 slot in eu-west at 2027-03-13 22:00 UTC is full: all 1 places are booked"},
		{"start not offered", notOffered, ErrSlotNotOffered,
			"release 9.2.0 offers no slot in eu-west starting 2027-03-20 23:00 UTC (the next with free places start 2027-03-20 22:00 UTC, 2027-03-27 22:00 UTC, 2027-04-03 22:00 UTC)"},
		{"region not offered", wrongRegion, ErrSlotNotOffered,
			"release 9.2.0 offers no slot in us-east starting 2027-03-20 22:00 UTC (none has free places)"},
		{"unknown instance", storeBooking("ghost", 2, 3), ErrNotFound,
			`record the bookings of instance "ghost" for 9.2.0: refers to something that does not exist (Key (instance_id)=(ghost) is not present in table "instances".)`},
		{"same slot twice", storeBooking("inst-001", 2, 2), ErrInvalidRequest,
			"book slots: primary and secondary are the same slot (2027-03-20 22:00 UTC); the secondary must be a later one"},
		{"fields missing", missing, ErrInvalidRequest, "book slots: region, targetVersion required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.BookSlots(ctx, tc.in)
			storeWantErr(t, err, tc.sentinel, tc.msg)
		})
	}
	// A failed rebooking keeps the update's previous reservations.
	if _, err := s.BookSlots(ctx, storeBooking("inst-000", 2, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BookSlots(ctx, storeBooking("inst-002", 0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BookSlots(ctx, storeBooking("inst-000", 0, 4)); !errors.Is(err, ErrSlotFull) {
		t.Fatalf("rebook onto a full slot: %v", err)
	}
	if got := storeUsage(t, s); !reflect.DeepEqual(got, []int{1, 1, 1, 1, 0}) {
		t.Fatalf("usage = %v", got)
	}
}

func TestReleaseSlotsIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s, _ := storeNewTestStore(t, storeTestFleet(2, 5))
	for _, id := range []string{"inst-000", "inst-001"} {
		if _, err := s.BookSlots(ctx, storeBooking(id, 0, 1)); err != nil {
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
	if got := storeUsage(t, s); !reflect.DeepEqual(got, []int{1, 1, 0, 0, 0}) {
		t.Fatalf("usage = %v", got)
	}
	_, err := s.ReleaseSlots(ctx, workflows.ReleaseSlotsInput{InstanceID: "inst-000"})
	storeWantErr(t, err, ErrInvalidRequest, "release slots: instanceId and offeredVersion required")
}

func TestRecordInstanceVersion(t *testing.T) {
	ctx := context.Background()
	s, _ := storeNewTestStore(t, storeTestFleet(1, 5))
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
	storeWantErr(t, err, ErrNotFound, `record instance version: instance "ghost" does not exist`)
	_, err = s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.9.9"})
	storeWantErr(t, err, ErrNotFound, `record version 9.9.9 on instance "inst-000": refers to something that does not exist (Key (current_version)=(9.9.9) is not present in table "releases".)`)
}

// storeTransition is a RecordTransitionInput of instance's 9.2.0 update.
func storeTransition(instance string, from, to workflows.Status) workflows.RecordTransitionInput {
	return workflows.RecordTransitionInput{
		Actor: "admin0@acme.example", Channel: workflows.ChannelUpdate, Action: "approved", From: from, Detail: "looks good",
		Snapshot: workflows.StatusView{
			WorkflowID: workflows.WorkflowID(instance, "9.2.0"), InstanceID: instance, TenantID: "acme",
			CurrentVersion: "9.0.0", OfferedVersion: "9.2.0", TargetVersion: "9.2.0", Mandatory: true, Status: to,
			Primary:   workflows.Window{Start: storeTestSlotStarts[0], End: storeTestSlotStarts[0].Add(12 * time.Hour)},
			Secondary: workflows.Window{Start: storeTestSlotStarts[1], End: storeTestSlotStarts[1].Add(12 * time.Hour)},
		},
	}
}

func TestRecordTransitionAuditAndProjection(t *testing.T) {
	ctx := context.Background()
	s, pool := storeNewTestStore(t, storeTestFleet(3, 5))

	started := storeTransition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled)
	started.Action, started.Actor, started.Channel, started.Detail = "scheduled", workflows.ActorSystem, workflows.ChannelWorkflow, ""
	first, err := s.RecordTransition(ctx, "run-1/1", started)
	if err != nil {
		t.Fatal(err)
	}
	approved := storeTransition("inst-000", workflows.StatusScheduled, workflows.StatusApproved)
	approved.Snapshot.ApprovedBy = "admin0@acme.example"
	approved.Snapshot.ApprovedAt = time.Date(2027, 3, 1, 9, 30, 0, 0, time.UTC)
	approved.Snapshot.Attempts = []workflows.Attempt{{Slot: workflows.SlotPrimary, Started: storeTestSlotStarts[0], Outcome: workflows.OutcomeFailed, Error: "disk full"}}
	second, err := s.RecordTransition(ctx, "run-1/2", approved)
	if err != nil {
		t.Fatal(err)
	}
	// The same activity retried: same row, nothing new.
	retried, err := s.RecordTransition(ctx, "run-1/2", approved)
	if err != nil || retried != second || second.AuditID <= first.AuditID {
		t.Fatalf("ids: first %d, second %d, retried %+v (%v)", first.AuditID, second.AuditID, retried, err)
	}
	if _, err := s.RecordTransition(ctx, "run-2/1", storeTransition("inst-001", workflows.StatusScheduled, workflows.StatusScheduled)); err != nil {
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
	want := AuditEntry{ID: second.AuditID, WorkflowID: "service-update:inst-000:9.2.0", InstanceID: "inst-000", Actor: "admin0@acme.example",
		Channel: workflows.ChannelUpdate, Action: "approved", Detail: "looks good", StatusBefore: workflows.StatusScheduled, StatusAfter: workflows.StatusApproved}
	if !reflect.DeepEqual(got, want) || log[0].Detail != "" || log[0].Actor != workflows.ActorSystem {
		t.Fatalf("audit log = %+v\nwant second %+v", log, want)
	}
	if _, err := pool.Exec(ctx, "UPDATE audit_log SET actor = 'forged'"); err == nil || !strings.Contains(err.Error(), "audit_log is append-only") {
		t.Fatalf("editing the audit log: %v, want refused", err)
	}

	all, err := s.ListUpdates(ctx, UpdateFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("ListUpdates = %d rows, want 2", len(all))
	}
	row := all[0]
	row.UpdatedAt = time.Time{}
	wantRow := UpdateRow{WorkflowID: "service-update:inst-000:9.2.0", InstanceID: "inst-000", OfferedVersion: "9.2.0", TargetVersion: "9.2.0",
		CurrentVersion: "9.0.0", Mandatory: true, Status: workflows.StatusApproved, PrimaryStart: storeTestSlotStarts[0], SecondaryStart: storeTestSlotStarts[1],
		ApprovedBy: "admin0@acme.example", ApprovedAt: time.Date(2027, 3, 1, 9, 30, 0, 0, time.UTC), Attempts: 1, LastError: "disk full"}
	if !reflect.DeepEqual(row, wantRow) {
		t.Fatalf("row = %+v\nwant %+v", row, wantRow)
	}
	for _, tc := range []struct {
		filter UpdateFilter
		want   []string
	}{
		{UpdateFilter{Status: string(workflows.StatusScheduled)}, []string{"inst-001"}},
		{UpdateFilter{Version: "9.2.0", Status: string(workflows.StatusApproved)}, []string{"inst-000"}},
		{UpdateFilter{Version: "9.3.0"}, nil},
		{UpdateFilter{Limit: 1}, []string{"inst-000"}},
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
	_, err = s.ListUpdates(ctx, UpdateFilter{Status: "Done"})
	storeWantErr(t, err, ErrInvalidRequest, `list updates: status "Done" is not one of Scheduled, Approved, InProgress, FallbackScheduled, Succeeded, Failed, NotApproved, Cancelled`)

	// An admin chose 9.3.0: the update is listed under both versions.
	chosen := storeTransition("inst-001", workflows.StatusScheduled, workflows.StatusApproved)
	chosen.Snapshot.TargetVersion = "9.3.0"
	if _, err := s.RecordTransition(ctx, "run-2/2", chosen); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ListUpdates(ctx, UpdateFilter{Version: "9.3.0"})
	if err != nil || len(rows) != 1 || rows[0].InstanceID != "inst-001" {
		t.Fatalf("ListUpdates(9.3.0) = %+v, %v", rows, err)
	}
}

func TestRecordTransitionErrorsLeaveNoAuditRow(t *testing.T) {
	ctx := context.Background()
	s, _ := storeNewTestStore(t, storeTestFleet(1, 5))

	_, err := s.RecordTransition(ctx, "run-9/1", storeTransition("ghost", workflows.StatusScheduled, workflows.StatusApproved))
	storeWantErr(t, err, ErrNotFound, `update the projection of service-update:ghost:9.2.0 (instance "ghost"): refers to something that does not exist (Key (instance_id)=(ghost) is not present in table "instances".)`)

	// A second workflow ID for an update that already has one.
	if _, err := s.RecordTransition(ctx, "run-1/1", storeTransition("inst-000", workflows.StatusScheduled, workflows.StatusScheduled)); err != nil {
		t.Fatal(err)
	}
	other := storeTransition("inst-000", workflows.StatusScheduled, workflows.StatusApproved)
	other.Snapshot.WorkflowID = "manual-run"
	_, err = s.RecordTransition(ctx, "run-8/1", other)
	storeWantErr(t, err, ErrDuplicate, `update the projection of manual-run (instance "inst-000"): already exists (Key (instance_id, offered_version)=(inst-000, 9.2.0) already exists.)`)

	empty := storeTransition("inst-000", "", workflows.StatusApproved)
	empty.Actor = ""
	_, err = s.RecordTransition(ctx, "", empty)
	storeWantErr(t, err, ErrInvalidRequest, "record transition: idempotency key, actor, from required")

	for _, id := range []string{"service-update:ghost:9.2.0", "manual-run"} {
		log, err := s.AuditLog(ctx, id)
		if err != nil || len(log) != 0 {
			t.Fatalf("audit log of %s = %+v, %v; want no rows (rolled back)", id, log, err)
		}
	}
}

// storeMapError against errors Postgres really raises.
func TestStoreMapErrorMapsPostgresCodes(t *testing.T) {
	ctx := context.Background()
	_, pool := storeNewTestStore(t, storeTestFleet(1, 5))
	cases := []struct {
		name     string
		sql      string
		sentinel error
		msg      string
	}{
		{"unique violation", "INSERT INTO tenants (id, name) VALUES ('acme', 'Again')", ErrDuplicate,
			"add tenant: already exists (Key (id)=(acme) already exists.)"},
		{"foreign key violation", "INSERT INTO instances (id, tenant_id, name, kind, region, time_zone, current_version) VALUES ('x', 'nobody', 'X', 'sandbox', 'eu', 'UTC', '9.0.0')", ErrNotFound,
			`add tenant: refers to something that does not exist (Key (tenant_id)=(nobody) is not present in table "tenants".)`},
		{"slot capacity", "UPDATE slots SET booked = capacity + 1", ErrSlotFull,
			"add tenant: the slot's bookings would exceed its capacity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, tc.sql)
			storeWantErr(t, storeMapError(err, "add tenant"), tc.sentinel, tc.msg)
		})
	}
	// Other Postgres errors and connection failures keep their cause and
	// match no sentinel, so activities retry them.
	_, err := pool.Exec(ctx, "UPDATE releases SET period_end = period_start WHERE version = '9.2.0'")
	mapped := storeMapError(err, "shorten period")
	for _, sentinel := range []error{ErrNotFound, ErrDuplicate, ErrSlotFull, ErrSlotNotOffered} {
		if errors.Is(mapped, sentinel) {
			t.Fatalf("%v matches %v", mapped, sentinel)
		}
	}
	if !strings.HasPrefix(mapped.Error(), "shorten period: ERROR: new row for relation \"releases\" violates check constraint") {
		t.Fatalf("mapped = %v", mapped)
	}
	if storeMapError(nil, "nothing") != nil {
		t.Fatal("nil error mapped to non-nil")
	}
}

func TestUpsertFleetRefusesNil(t *testing.T) {
	s := NewStore(pgtest.NewPool(t))
	_, err := s.UpsertFleet(context.Background(), nil)
	storeWantErr(t, err, ErrInvalidRequest, "load fleet: no fleet given")
}

// BenchmarkUpsertFleet loads a 100,000-instance fleet (200,000 recipient
// rows) into an empty database, then reloads it unchanged.
func BenchmarkUpsertFleet(b *testing.B) {
	const instances = 100_000
	fl := storeTestFleet(instances, 10)
	for range b.N {
		b.StopTimer()
		s := NewStore(pgtest.NewPool(b))
		b.StartTimer()
		start := time.Now()
		if _, err := s.UpsertFleet(context.Background(), fl); err != nil {
			b.Fatal(err)
		}
		first := time.Since(start)
		report, err := s.UpsertFleet(context.Background(), fl)
		if err != nil || report.Instances.Unchanged != instances {
			b.Fatalf("reload: %+v, %v", report.Instances, err)
		}
		b.ReportMetric(first.Seconds(), "s/first-load")
		b.ReportMetric((time.Since(start) - first).Seconds(), "s/reload")
	}
}

// Only transactions aborted because of a concurrent one run again.
func TestStoreRetryableTx(t *testing.T) {
	deadlock := &pgconn.PgError{Code: storePgDeadlockDetected}
	cases := []struct {
		err  error
		want bool
	}{
		{deadlock, true},
		{&pgconn.PgError{Code: storePgSerializationFailure}, true},
		{storeMapError(deadlock, "book a slot"), true},
		{&pgconn.PgError{Code: storePgUniqueViolation}, false},
		{storeErrorf(ErrSlotFull, "full"), false},
		{context.Canceled, false},
	}
	for _, tc := range cases {
		if got := storeRetryableTx(tc.err); got != tc.want {
			t.Errorf("storeRetryableTx(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
