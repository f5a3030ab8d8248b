package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

func TestUpsertFleetLoadsEverythingAndIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := store.New(pgtest.TestTx(t))
	fl := storetest.Fleet(3, 5)
	fl.Instances[1].ExtraRecipients = []string{"changes@acme.example"}

	first, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatal(err)
	}
	want := store.FleetLoadReport{
		Releases: store.FleetLoadCounts{Inserted: 4}, Slots: store.FleetLoadCounts{Inserted: 6}, Tenants: store.FleetLoadCounts{Inserted: 1},
		Instances: store.FleetLoadCounts{Inserted: 3}, RecipientsAdded: 7,
	}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("first load = %+v\nwant %+v", first, want)
	}
	second, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatal(err)
	}
	want = store.FleetLoadReport{
		Releases: store.FleetLoadCounts{Unchanged: 4}, Slots: store.FleetLoadCounts{Unchanged: 6}, Tenants: store.FleetLoadCounts{Unchanged: 1},
		Instances: store.FleetLoadCounts{Unchanged: 3},
	}
	if !reflect.DeepEqual(second, want) {
		t.Fatalf("second load = %+v\nwant %+v", second, want)
	}

	got, err := s.Recipients(ctx, "inst-001")
	if err != nil {
		t.Fatal(err)
	}
	wantInst := store.InstanceRecipients{CurrentVersion: "9.1.0", Admins: []string{"admin1@acme.example"},
		Users: []string{"user@acme.example"}, Extra: []string{"changes@acme.example"}}
	if !reflect.DeepEqual(got, wantInst) {
		t.Fatalf("Instance = %+v, want %+v", got, wantInst)
	}
	usage, err := s.SlotUsage(ctx, "9.3.0")
	if err != nil {
		t.Fatal(err)
	}
	wantUsage := []store.SlotUsageRow{{ID: usage[0].ID, Release: "9.3.0", Region: "eu-west", Start: time.Date(2027, 9, 4, 22, 0, 0, 0, time.UTC),
		Window: 12 * time.Hour, Capacity: 10}}
	if !reflect.DeepEqual(usage, wantUsage) {
		t.Fatalf("SlotUsage = %+v, want %+v", usage, wantUsage)
	}
	if _, err := s.Recipients(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Instance(nobody) = %v, want store.ErrNotFound", err)
	}
}

func TestUpsertFleetReportsChangesAndAdminChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(3, 5)
	s, _ := setup(t, fl)

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
	want := store.FleetLoadReport{
		Releases: store.FleetLoadCounts{Unchanged: 4}, Slots: store.FleetLoadCounts{Updated: 2, Unchanged: 4}, Tenants: store.FleetLoadCounts{Updated: 1},
		Instances: store.FleetLoadCounts{Inserted: 1, Unchanged: 3}, RecipientsAdded: 2, RecipientsRemoved: 1,
		AdminChanges: []store.AdminChange{{InstanceID: "inst-001", Admins: []string{"admin1@acme.example", "deputy@acme.example"}}},
	}
	if !reflect.DeepEqual(report, want) {
		t.Fatalf("report = %+v\nwant %+v", report, want)
	}
	got, err := s.Recipients(ctx, "inst-000")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Admins, []string{"ADMIN0@acme.example"}) {
		t.Fatalf("admins of inst-000 = %v, want the file's spelling", got.Admins)
	}
	got, err = s.Recipients(ctx, "inst-002")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Users) != 0 {
		t.Fatalf("users of inst-002 = %v, want none (removed from the file)", got.Users)
	}
}

func TestUpsertFleetRefusesCapacityBelowBookings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(3, 5)
	s, _ := setup(t, fl)
	for _, id := range []string{"inst-000", "inst-001"} {
		if _, err := s.BookSlots(ctx, storetest.Booking(id, 0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	fl.Releases[2].Slots[0].Capacity = 1
	fl.Releases[2].Slots[1].Capacity = 0
	fl.Tenants[0].Name = "Renamed"
	_, err := s.UpsertFleet(ctx, fl)
	wantErr(t, err, store.ErrCapacityBelowBookings, "load slots: the 9.2.0 slot in eu-west at 2027-03-06 22:00 UTC holds 2 bookings, the file gives it capacity 1; "+
		"the 9.2.0 slot in eu-west at 2027-03-13 22:00 UTC holds 2 bookings, the file gives it capacity 0; "+
		"keep each capacity at or above its bookings (instances can be moved by rescheduling)")
	// Refused whole: nothing of the file was applied.
	if got := storetest.Usage(t, s); !reflect.DeepEqual(got, []int{2, 2, 0, 0, 0}) {
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
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(2, 5)
	s, _ := setup(t, fl)
	if _, err := s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.2.0"}); err != nil {
		t.Fatal(err)
	}
	fl.Instances[1].Version = "9.2.0" // the file may move an instance forward
	report, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatal(err)
	}
	wantKept := []store.FleetKeptVersion{{InstanceID: "inst-000", FileVersion: "9.0.0", CurrentVersion: "9.2.0"}}
	if !reflect.DeepEqual(report.KeptVersions, wantKept) || report.Instances != (store.FleetLoadCounts{Updated: 1, Unchanged: 1}) {
		t.Fatalf("report = %+v", report)
	}
	for id, want := range map[string]string{"inst-000": "9.2.0", "inst-001": "9.2.0"} {
		got, err := s.Recipients(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.CurrentVersion != want {
			t.Errorf("%s runs %s, want %s", id, got.CurrentVersion, want)
		}
	}
}

func TestUpsertFleetReleaseOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(1, 5)
	s, _ := setup(t, fl)

	// Swapping two orders in one file is fine (the constraint is deferred).
	fl.Releases[2].Order, fl.Releases[3].Order = 40, 30
	report, err := s.UpsertFleet(ctx, fl)
	if err != nil {
		t.Fatalf("swap orders: %v", err)
	}
	if report.Releases != (store.FleetLoadCounts{Updated: 2, Unchanged: 2}) {
		t.Fatalf("releases = %+v", report.Releases)
	}

	// A release dropped from the file keeps its order; giving that order to
	// another release is refused with both named.
	fl.Releases = fl.Releases[1:]
	fl.Releases[0].Order = 10
	_, err = s.UpsertFleet(ctx, fl)
	wantErr(t, err, store.ErrDuplicate, "load releases: release 9.0.0 (loaded earlier, not in this file) has order 10, which the file gives to 9.1.0; list every release in the file with its order")
}

func TestUpsertFleetRefusesNil(t *testing.T) {
	t.Parallel()
	s := store.New(pgtest.TestTx(t))
	_, err := s.UpsertFleet(context.Background(), nil)
	wantErr(t, err, store.ErrInvalidRequest, "load fleet: no fleet given")
}

// BenchmarkUpsertFleet loads a 100,000-instance fleet (200,000 recipient
// rows) into an empty database, then reloads it unchanged.
func BenchmarkUpsertFleet(b *testing.B) {
	const instances = 100_000
	fl := storetest.Fleet(instances, 10)
	for range b.N {
		b.StopTimer()
		s := store.New(pgtest.NewPool(b))
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
