package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/store"
)

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestSlotTimeResolvesInTheInstancesZone(t *testing.T) {
	loc := berlin(t)
	for value, want := range map[string]time.Time{
		"2027-03-06 02:00":          time.Date(2027, 3, 6, 1, 0, 0, 0, time.UTC),  // CET, UTC+1
		"2027-07-06T02:00":          time.Date(2027, 7, 6, 0, 0, 0, 0, time.UTC),  // CEST, UTC+2
		"2027-03-06T02:00:00+05:00": time.Date(2027, 3, 5, 21, 0, 0, 0, time.UTC), // RFC 3339 keeps its offset
	} {
		var f slotTime
		if err := f.Set(value); err != nil {
			t.Fatalf("Set(%q): %v", value, err)
		}
		got, err := f.resolve("primary", loc)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q resolves to %v, %v; want %v", value, got.UTC(), err, want)
		}
	}
}

func TestSlotTimeRefusesDSTGapsAndRepeats(t *testing.T) {
	loc := berlin(t)
	for value, want := range map[string]string{
		// 28 March 2027: the clocks go from 02:00 to 03:00.
		"2027-03-28 02:30": `reschedule: --primary "2027-03-28 02:30" does not exist in Europe/Berlin (the clocks skip it that day)`,
		// 31 October 2027: 02:00 to 03:00 happens twice.
		"2027-10-31 02:30": `reschedule: --primary "2027-10-31 02:30" happens twice in Europe/Berlin; give it in RFC 3339 with its offset: 2027-10-31T02:30:00+02:00 or 2027-10-31T02:30:00+01:00`,
	} {
		var f slotTime
		if err := f.Set(value); err != nil {
			t.Fatal(err)
		}
		_, err := f.resolve("primary", loc)
		var usage *cli.UsageError
		if !errors.As(err, &usage) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: error %v, want a usage error starting %q", value, err, want)
		}
	}
}

func TestPickSlotsReadsTheOperatorsChoice(t *testing.T) {
	loc := berlin(t)
	start := time.Date(2027, 3, 6, 1, 0, 0, 0, time.UTC)
	slots := []store.SlotRow{
		{Region: "emea", Start: start, Window: 12 * time.Hour, Capacity: 5, Booked: 1},
		{Region: "emea", Start: start.Add(6 * time.Hour), Window: 12 * time.Hour, Capacity: 5},
		{Region: "emea", Start: start.Add(7 * 24 * time.Hour), Window: 12 * time.Hour, Capacity: 5},
	}
	var out bytes.Buffer
	// A typo, then the primary; a secondary inside the primary window, then one after it.
	primary, secondary, err := pickSlots(strings.NewReader("x\n1\n2\n3\n"), &out, slots, loc)
	if err != nil {
		t.Fatal(err)
	}
	if !primary.Equal(slots[0].Start) || !secondary.Equal(slots[2].Start) {
		t.Errorf("picked %v and %v, want slots 1 and 3", primary, secondary)
	}
	for _, want := range []string{
		"  1  Sat 6 Mar 2027 02:00 CET  (2027-03-06 01:00 UTC, 12h0m0s window, 4 free)",
		"type a number from 1 to 3",
		"the secondary slot must start after the primary window ends (Sat 6 Mar 2027 14:00 CET)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("picker output lacks %q:\n%s", want, out.String())
		}
	}
	if _, _, err := pickSlots(strings.NewReader("1\n"), &out, slots, loc); err == nil || err.Error() != "no secondary slot chosen" {
		t.Errorf("input ended before the secondary: %v", err)
	}
	if _, _, err := pickSlots(strings.NewReader(""), &out, slots[:1], loc); err == nil || !strings.Contains(err.Error(), "only 1 free slot(s) offered") {
		t.Errorf("one free slot: %v", err)
	}
}
