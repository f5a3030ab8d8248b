package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// Release orders 10, 20, 30, 40 are positions 1..4: 9.0.0 is n-2 for
// 9.2.0 although its order is 20 less, not 2.
func TestRolloutCandidates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(12, 5)
	fl.Instances[3].Version = "9.2.0"
	s, _ := setup(t, fl)

	list, err := s.RolloutCandidates(ctx, "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	levels := map[string]workflows.EligibilityLevel{}
	for _, c := range list {
		order = append(order, c.Instance.ID)
		levels[c.Instance.ID] = c.Eligibility
	}
	// sandboxes (every tenth) first, then production, each by ID
	want := []string{"inst-000", "inst-010", "inst-001", "inst-002", "inst-003", "inst-004", "inst-005", "inst-006", "inst-007", "inst-008", "inst-009", "inst-011"}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("order = %v\nwant %v", order, want)
	}
	for id, want := range map[string]workflows.EligibilityLevel{"inst-000": workflows.EligibilityMandatory, "inst-001": workflows.EligibilityOptional, "inst-003": workflows.EligibilityNone} {
		if levels[id] != want {
			t.Errorf("%s: %v, want %v", id, levels[id], want)
		}
	}
	wantFirst := store.RolloutCandidate{
		Instance:       workflows.Instance{ID: "inst-000", Name: "Instance 0", TenantID: "acme", Kind: fleet.KindSandbox, Region: "eu-west", TimeZone: "Europe/Berlin"},
		CurrentVersion: "9.0.0", Eligibility: workflows.EligibilityMandatory,
	}
	if !reflect.DeepEqual(list[0], wantFirst) {
		t.Fatalf("first = %+v\nwant %+v", list[0], wantFirst)
	}

	later, err := s.RolloutCandidates(ctx, "9.3.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range later {
		if c.Eligibility != workflows.EligibilityMandatory && c.Instance.ID != "inst-003" {
			t.Errorf("%s on %s for 9.3.0: %v, want mandatory", c.Instance.ID, c.CurrentVersion, c.Eligibility)
		}
	}
	_, err = s.RolloutCandidates(ctx, "10.0.0")
	wantErr(t, err, store.ErrNotFound, `release "10.0.0" does not exist; load it with the fleet file first`)
}

func TestBookRolloutSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(4, 2)
	fl.Releases[2].Slots[2].Window = fleet.Duration(36 * time.Hour)
	s, _ := setup(t, fl)
	candidates, err := s.RolloutCandidates(ctx, "9.2.0")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]store.RolloutCandidate{}
	for _, c := range candidates {
		byID[c.Instance.ID] = c
	}
	// After the first slot started; the secondary must start a week after
	// the primary window ends.
	now := storetest.SlotStarts[0].Add(time.Minute)
	gap := 7 * 24 * time.Hour

	got, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-000"].Instance.ID, Version: "9.2.0", SecondaryMinGap: gap, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	want := workflows.Input{
		Instance: workflows.Instance{ID: "inst-000", Name: "Instance 0", TenantID: "acme", Kind: fleet.KindSandbox, Region: "eu-west", TimeZone: "Europe/Berlin"},
		Admins:   []string{"admin0@acme.example"}, CurrentVersion: "9.0.0", TargetVersion: "9.2.0", Mandatory: true,
		PrimaryStart: storetest.SlotStarts[1], SecondaryStart: storetest.SlotStarts[3], WindowLength: 12 * time.Hour, SecondaryWindowLength: 12 * time.Hour,
		Slots: []workflows.OfferedSlot{
			{Version: "9.2.0", Start: storetest.SlotStarts[0], WindowLength: 12 * time.Hour},
			{Version: "9.2.0", Start: storetest.SlotStarts[1], WindowLength: 12 * time.Hour},
			{Version: "9.2.0", Start: storetest.SlotStarts[2], WindowLength: 36 * time.Hour},
			{Version: "9.2.0", Start: storetest.SlotStarts[3], WindowLength: 12 * time.Hour},
			{Version: "9.2.0", Start: storetest.SlotStarts[4], WindowLength: 12 * time.Hour},
			{Version: "9.3.0", Start: time.Date(2027, 9, 4, 22, 0, 0, 0, time.UTC), WindowLength: 12 * time.Hour},
		},
		Releases: []workflows.ReleaseOption{
			{Version: "9.2.0", PeriodStart: storetest.PeriodStart, PeriodEnd: storetest.PeriodEnd},
			{Version: "9.3.0", PeriodStart: time.Date(2027, 8, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2027, 11, 1, 0, 0, 0, 0, time.UTC)},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input = %+v\nwant %+v", got, want)
	}
	// A re-run a day later returns the bookings it has, whatever capacity
	// is left (TestRolloutBooksNoPrimarySoonerThanTheMinimumNotice: unless
	// its primary came too close).
	again, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-000"].Instance.ID, Version: "9.2.0", SecondaryMinGap: gap, Now: now.Add(24 * time.Hour)})
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("re-run = %+v, %v", again, err)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 1, 0, 1, 0}) {
		t.Fatalf("usage = %v", usage)
	}

	// inst-001 (n-1, optional) fills slot 1; inst-002 then starts in slot 2,
	// whose 36h window pushes its secondary to slot 4.
	got, err = s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-001"].Instance.ID, Version: "9.2.0", SecondaryMinGap: gap, Now: now})
	if err != nil || got.Mandatory || !got.PrimaryStart.Equal(storetest.SlotStarts[1]) || !got.SecondaryStart.Equal(storetest.SlotStarts[3]) {
		t.Fatalf("inst-001 = %+v, %v", got, err)
	}
	got, err = s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-002"].Instance.ID, Version: "9.2.0", SecondaryMinGap: gap, Now: now})
	if err != nil || !got.PrimaryStart.Equal(storetest.SlotStarts[2]) || !got.SecondaryStart.Equal(storetest.SlotStarts[4]) || got.WindowLength != 36*time.Hour {
		t.Fatalf("inst-002 = %+v, %v", got, err)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 2, 1, 2, 1}) {
		t.Fatalf("usage = %v", usage)
	}
	// inst-003 with a two-week gap: slot 2 has a place but its window ends
	// on 22 March, so slot 4 (3 April) is too early; slot 3 is full; slot 4
	// has no later slot. Nothing is booked.
	_, err = s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-003"].Instance.ID, Version: "9.2.0", SecondaryMinGap: 14 * 24 * time.Hour, Now: now})
	wantErr(t, err, store.ErrNoCapacity, `no free primary and secondary slot pair of 9.2.0 in region eu-west after 2027-03-06 22:01 UTC (MIN_NOTICE 0s; secondary at least 336h after the primary window) for instance "inst-003"`)
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 2, 1, 2, 1}) {
		t.Fatalf("usage after store.ErrNoCapacity = %v", usage)
	}

	if _, err := s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-003", Version: "9.2.0"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-003"].Instance.ID, Version: "9.2.0", SecondaryMinGap: gap, Now: now})
	wantErr(t, err, store.ErrNotEligible, `instance "inst-003" runs 9.2.0, which is not older than 9.2.0: no update needed`)
	_, err = s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: "ghost", Version: "9.2.0", SecondaryMinGap: gap, Now: now})
	wantErr(t, err, store.ErrNotFound, `instance "ghost" does not exist`)
	_, err = s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-001"].Instance.ID, Version: "8.0.0", SecondaryMinGap: gap, Now: now})
	wantErr(t, err, store.ErrNotFound, `release "8.0.0" does not exist; load it with the fleet file first`)
	_, err = s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: byID["inst-001"].Instance.ID, Version: "9.2.0", SecondaryMinGap: -time.Hour, Now: now})
	if !errors.Is(err, store.ErrInvalidRequest) {
		t.Fatalf("negative gap: %v", err)
	}
	storetest.CheckBookings(t, s)
}

// The rollout's bookings are the same reservations BookSlots moves: an
// admin's reschedule after a rollout frees the rollout's slots.
func TestBookRolloutSlotsThenReschedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(1, 1))
	in, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: "inst-000", Version: "9.2.0", Now: storetest.PeriodStart})
	if err != nil {
		t.Fatal(err)
	}
	if !in.PrimaryStart.Equal(storetest.SlotStarts[0]) || !in.SecondaryStart.Equal(storetest.SlotStarts[1]) {
		t.Fatalf("input = %+v", in)
	}
	if _, err := s.BookSlots(ctx, storetest.Booking("inst-000", 2, 3)); err != nil {
		t.Fatal(err)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 0, 1, 1, 0}) {
		t.Fatalf("usage = %v", usage)
	}
	storetest.CheckBookings(t, s)
}

// A lone reservation (left by hand, or by a tool other than BookSlots) is
// given back and replaced by a pair, so counters stay true.
func TestBookRolloutSlotsReplacesALoneReservation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, tx := setup(t, storetest.Fleet(1, 5))
	_, err := tx.Exec(ctx, `
WITH slot AS (UPDATE slots SET booked = booked + 1 WHERE release_version = '9.2.0' AND starts_at = $1 RETURNING id)
INSERT INTO slot_bookings (instance_id, offered_version, role, slot_id, workflow_id)
SELECT 'inst-000', '9.2.0', 'secondary', id, 'service-update:inst-000:9.2.0' FROM slot`, storetest.SlotStarts[4])
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: "inst-000", Version: "9.2.0", Now: storetest.PeriodStart})
	if err != nil {
		t.Fatal(err)
	}
	if !in.PrimaryStart.Equal(storetest.SlotStarts[0]) || !in.SecondaryStart.Equal(storetest.SlotStarts[1]) {
		t.Fatalf("input = %+v", in)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{1, 1, 0, 0, 0}) {
		t.Fatalf("usage = %v", usage)
	}
	storetest.CheckBookings(t, s)
}

// CheckInstance answers for today's versions and releases: what the
// instance runs, whether the target is already reached, and whether the
// update is mandatory (n-2) now, whatever the rollout saw.
func TestCheckInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(2, 5)) // inst-000 on 9.0.0, inst-001 on 9.1.0
	check := func(instance, target string) workflows.CheckInstanceResult {
		t.Helper()
		res, err := s.CheckInstance(ctx, workflows.CheckInstanceInput{InstanceID: instance, TargetVersion: target})
		if err != nil {
			t.Fatalf("check %s for %s: %v", instance, target, err)
		}
		return res
	}
	for _, tc := range []struct {
		instance, target string
		want             workflows.CheckInstanceResult
	}{
		{"inst-000", "9.2.0", workflows.CheckInstanceResult{CurrentVersion: "9.0.0", Mandatory: true}},
		{"inst-001", "9.2.0", workflows.CheckInstanceResult{CurrentVersion: "9.1.0"}},
		{"inst-001", "9.1.0", workflows.CheckInstanceResult{CurrentVersion: "9.1.0", UpToDate: true}},
		{"inst-001", "9.0.0", workflows.CheckInstanceResult{CurrentVersion: "9.1.0", UpToDate: true}},
		{"inst-001", "9.3.0", workflows.CheckInstanceResult{CurrentVersion: "9.1.0", Mandatory: true}},
	} {
		if got := check(tc.instance, tc.target); got != tc.want {
			t.Errorf("%s for %s: %+v, want %+v", tc.instance, tc.target, got, tc.want)
		}
	}

	// The mandatory 9.2.0 update of inst-000 becomes optional once 9.1.0
	// is recorded, and unnecessary once 9.2.0 or later is.
	if _, err := s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.1.0"}); err != nil {
		t.Fatal(err)
	}
	if got := check("inst-000", "9.2.0"); got != (workflows.CheckInstanceResult{CurrentVersion: "9.1.0"}) {
		t.Errorf("after 9.1.0 was recorded: %+v, want optional", got)
	}
	if _, err := s.RecordInstanceVersion(ctx, workflows.RecordVersionInput{InstanceID: "inst-000", Version: "9.3.0"}); err != nil {
		t.Fatal(err)
	}
	if got := check("inst-000", "9.2.0"); got != (workflows.CheckInstanceResult{CurrentVersion: "9.3.0", UpToDate: true}) {
		t.Errorf("after 9.3.0 was recorded: %+v, want up to date", got)
	}

	_, err := s.CheckInstance(ctx, workflows.CheckInstanceInput{InstanceID: "ghost", TargetVersion: "9.2.0"})
	wantErr(t, err, store.ErrNotFound, `check instance: instance "ghost" does not exist`)
	_, err = s.CheckInstance(ctx, workflows.CheckInstanceInput{InstanceID: "inst-000", TargetVersion: "9.9.9"})
	wantErr(t, err, store.ErrNotFound, `release "9.9.9" does not exist; load it with the fleet file first`)
	_, err = s.CheckInstance(ctx, workflows.CheckInstanceInput{InstanceID: "inst-000"})
	wantErr(t, err, store.ErrInvalidRequest, "check instance: instanceId and targetVersion required")
}
