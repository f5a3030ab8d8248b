package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// localLayouts are the local times reschedule accepts, read in the
// instance's time zone.
var localLayouts = []string{"2006-01-02 15:04", "2006-01-02T15:04"}

// slotTime is the value of --primary and --secondary: an RFC 3339 time, or
// the instance's local time ("2027-03-06 02:00"), resolved once the
// instance's zone is known.
type slotTime struct {
	raw   string
	t     time.Time // set for RFC 3339
	local time.Time // set for a local time: its wall clock, in UTC
}

func (f *slotTime) String() string { return f.raw }

func (f *slotTime) Type() string { return "time" }

func (f *slotTime) Set(value string) error {
	if t, err := time.Parse(time.RFC3339, value); err == nil {
		*f = slotTime{raw: value, t: t}
		return nil
	}
	for _, layout := range localLayouts {
		if t, err := time.Parse(layout, value); err == nil {
			*f = slotTime{raw: value, local: t}
			return nil
		}
	}
	return errors.New(`not a time (accepted: RFC 3339 such as 2026-03-03T02:00:00+01:00, or the instance's local time such as "2026-03-03 02:00")`)
}

// isLocal reports whether the time needs the instance's zone.
func (f *slotTime) isLocal() bool { return !f.local.IsZero() }

// resolve returns the moment f names, a local time read in loc. A local
// time that the zone skips or repeats (a DST change) is refused, naming
// the choices.
func (f *slotTime) resolve(flagName string, loc *time.Location) (time.Time, error) {
	if !f.isLocal() {
		return f.t, nil
	}
	w := f.local
	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, loc)
	sameWall := func(u time.Time) bool {
		u = u.In(loc)
		return u.Year() == w.Year() && u.YearDay() == w.YearDay() && u.Hour() == w.Hour() && u.Minute() == w.Minute()
	}
	if !sameWall(t) {
		return time.Time{}, cli.Usagef("reschedule: --%s %q does not exist in %s (the clocks skip it that day); give another time, or RFC 3339 with an offset",
			flagName, f.raw, loc)
	}
	for _, d := range []time.Duration{-2 * time.Hour, -time.Hour, -30 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour} {
		if other := t.Add(d); sameWall(other) {
			first, second := t, other
			if d < 0 {
				first, second = other, t
			}
			return time.Time{}, cli.Usagef("reschedule: --%s %q happens twice in %s; give it in RFC 3339 with its offset: %s or %s",
				flagName, f.raw, loc, first.In(loc).Format(time.RFC3339), second.In(loc).Format(time.RFC3339))
		}
	}
	return t, nil
}

// instanceZone reads the instance's time zone from Postgres.
func instanceZone(ctx context.Context, e *env, instanceID string) (workflows.Instance, *time.Location, error) {
	pool, err := e.postgres(ctx)
	if err != nil {
		return workflows.Instance{}, nil, err
	}
	in, err := store.New(pool).Instance(ctx, instanceID)
	if err != nil {
		return in, nil, err
	}
	loc, err := time.LoadLocation(in.TimeZone)
	if err != nil {
		return in, nil, fmt.Errorf("instance %s: time zone %q: %w", instanceID, in.TimeZone, err)
	}
	return in, loc, nil
}

// freeSlots lists the slots of version in the instance's region that
// start after now and have a free place.
func freeSlots(ctx context.Context, e *env, in workflows.Instance, version string, now time.Time) ([]store.SlotRow, error) {
	pool, err := e.postgres(ctx)
	if err != nil {
		return nil, err
	}
	slots, err := store.New(pool).Slots(ctx, version)
	if err != nil {
		return nil, err
	}
	var free []store.SlotRow
	for _, s := range slots {
		if s.Region == in.Region && s.Start.After(now) && s.Capacity > s.Booked {
			free = append(free, s)
		}
	}
	return free, nil
}

// isTerminalInput reports whether r is a terminal a person types into.
func isTerminalInput(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// pickSlots shows the free slots numbered, in the instance's zone with UTC
// beside, and reads the operator's choice of a primary and a secondary
// slot (one that starts after the primary's window ends).
func pickSlots(in io.Reader, out io.Writer, slots []store.SlotRow, loc *time.Location) (primary, secondary time.Time, err error) {
	if len(slots) < 2 {
		return time.Time{}, time.Time{}, fmt.Errorf("only %d free slot(s) offered: a primary and a later secondary are needed (starter slots shows them all)", len(slots))
	}
	for i, s := range slots {
		fmt.Fprintf(out, "%3d  %s  (%s, %s window, %d free)\n", i+1, s.Start.In(loc).Format(workflows.LocalTimeLayout),
			s.Start.UTC().Format(utcLayout), s.Window, s.Capacity-s.Booked)
	}
	lines := bufio.NewScanner(in)
	choose := func(role string, after time.Time) (store.SlotRow, error) {
		for {
			fmt.Fprintf(out, "%s slot [1-%d]: ", role, len(slots))
			if !lines.Scan() {
				return store.SlotRow{}, fmt.Errorf("no %s slot chosen", role)
			}
			n, err := strconv.Atoi(strings.TrimSpace(lines.Text()))
			switch {
			case err != nil || n < 1 || n > len(slots):
				fmt.Fprintf(out, "type a number from 1 to %d\n", len(slots))
			case !slots[n-1].Start.After(after):
				fmt.Fprintf(out, "the secondary slot must start after the primary window ends (%s)\n", after.In(loc).Format(workflows.LocalTimeLayout))
			default:
				return slots[n-1], nil
			}
		}
	}
	p, err := choose("primary", time.Time{})
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	s, err := choose("secondary", p.Start.Add(p.Window))
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	return p.Start, s.Start, nil
}
