package store_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
)

// A rollout never books a primary slot sooner than the minimum notice
// (MIN_NOTICE), so admins get their reminders, and never reuses a held
// booking whose primary has come closer than that: it books anew or, when
// nothing is far enough, gives the old booking back and says so (#4).
func TestRolloutBooksNoPrimarySoonerThanTheMinimumNotice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(2, 5))
	book := func(instance string, now time.Time, notice time.Duration) (time.Time, time.Time, error) {
		in, err := s.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{
			InstanceID: instance, Version: "9.2.0", SecondaryMinGap: time.Hour, Now: now, MinNotice: notice,
		})
		return in.PrimaryStart, in.SecondaryStart, err
	}
	day := 24 * time.Hour

	// 1 February with 40 days' notice: the 6 March slot is too soon.
	primary, secondary, err := book("inst-001", storetest.PeriodStart, 40*day)
	if err != nil || !primary.Equal(storetest.SlotStarts[1]) || !secondary.Equal(storetest.SlotStarts[2]) {
		t.Fatalf("with 40 days' notice: %s, %s, %v; want the 13 and 20 March slots", primary, secondary, err)
	}
	_, _, err = book("inst-000", storetest.PeriodStart, 70*day)
	wantErr(t, err, store.ErrNoCapacity, "no free slot of 9.2.0 in eu-west starts after 2027-04-12 00:00 UTC (MIN_NOTICE 1680h)")

	// inst-000 booked on 1 February without notice holds 6 and 13 March.
	// A re-run on 1 March with a week's notice gives them back and books
	// 13 and 20 March.
	if _, _, err := book("inst-000", storetest.PeriodStart, 0); err != nil {
		t.Fatal(err)
	}
	march := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	primary, secondary, err = book("inst-000", march, 7*day)
	if err != nil || !primary.Equal(storetest.SlotStarts[1]) || !secondary.Equal(storetest.SlotStarts[2]) {
		t.Fatalf("re-run with a stale primary: %s, %s, %v; want the 13 and 20 March slots", primary, secondary, err)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 2, 2, 0, 0}) {
		t.Fatalf("usage = %v", usage)
	}
	storetest.CheckBookings(t, s)

	// On 1 April nothing starts a week out: the stale booking is given back.
	_, _, err = book("inst-000", time.Date(2027, 4, 1, 0, 0, 0, 0, time.UTC), 7*day)
	wantErr(t, err, store.ErrNoCapacity, "no free slot of 9.2.0 in eu-west starts after 2027-04-08 00:00 UTC (MIN_NOTICE 168h)")
	if b, err := s.Bookings(ctx, "inst-000", "9.2.0"); err != nil || len(b) != 0 {
		t.Fatalf("inst-000 keeps stale bookings %+v (%v)", b, err)
	}
	if _, found, err := s.OpenUpdate(ctx, "inst-000"); err != nil || found {
		t.Fatalf("inst-000 still held (%t, %v) after its stale booking was given back", found, err)
	}
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{0, 1, 1, 0, 0}) {
		t.Fatalf("usage = %v", usage)
	}
	storetest.CheckBookings(t, s)
}
