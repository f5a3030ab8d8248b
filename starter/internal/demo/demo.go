// Package demo is the plan of `starter demo`, the demo behind `make run`:
// a release on a compressed clock, a small fleet whose admins each act
// their part, and the live table that shows the updates.
package demo

import (
	"bytes"
	_ "embed"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/workflows"
)

// fleetTemplate is the demo's fleet file; its times and instance IDs are
// filled in at each run.
//
//go:embed fleet.json.tmpl
var fleetTemplate string

// The demo's release and its compressed clock: reminders at 90, 60 and 30
// seconds and at the slot, 45-second windows, three slots 2, 3 and 4
// minutes out, and a release period ending after 5 minutes, so the whole
// lifecycle plays out in about five minutes.
const (
	Version        = "9.2.0"
	window         = 45 * time.Second
	SecondaryGap   = 15 * time.Second
	firstSlot      = 2 * time.Minute
	slotSpacing    = time.Minute
	slotsPerRegion = 3
	periodEnd      = 5 * time.Minute
	Refresh        = 3 * time.Second
	WebUI          = "http://localhost:8233"
)

var (
	ReminderOffsets = []time.Duration{90 * time.Second, 60 * time.Second, 30 * time.Second, 0}
	regions         = []string{"emea", "amer", "apac"}
)

// Action is what the demo does with one instance's update.
type Action int

const (
	Approve         Action = iota // approved → Succeeded in the primary slot
	ApproveThenFail               // approved, primary fails → fallback → Succeeded
	Mandatory                     // n-2: runs without approval
	Reschedule                    // moved to the second and third slots → Succeeded
	LeaveUnapproved               // never approved → NotApproved at the period's end
	AlreadyCurrent                // already on the release: not eligible
)

// Cast lists the demo fleet's instances (IDs without the run suffix) and
// what happens to each.
var Cast = []struct {
	Instance string
	Admin    string
	Action   Action
}{
	{"contoso-sandbox", "ana.admin@contoso.example", Approve},
	{"contoso-prod", "ben.ops@contoso.example", ApproveThenFail},
	{"fabrikam-sandbox", "fay.admin@fabrikam.example", Mandatory},
	{"fabrikam-prod", "fay.admin@fabrikam.example", Reschedule},
	{"northwind-prod", "kenji.admin@northwind.example", LeaveUnapproved},
	{"northwind-sandbox", "kenji.admin@northwind.example", AlreadyCurrent},
}

// Run is one run of the demo: its ID suffixes the instance IDs so the
// workflow IDs of earlier runs, kept by the dev server, never collide.
type Run struct {
	ID    string
	start time.Time // the release period's start; slots follow it
}

// NewRun starts a run at now; an empty id becomes the time, HHMMSS UTC.
func NewRun(id string, now time.Time) Run {
	if id == "" {
		id = now.UTC().Format("150405")
	}
	return Run{ID: id, start: now.UTC().Truncate(time.Second)}
}

// InstanceID is the ID of the cast's instance base in this run.
func (r Run) InstanceID(base string) string { return base + "-" + r.ID }

// Slot returns the start of the i-th slot (0-based) of every region.
func (r Run) Slot(i int) time.Time {
	return r.start.Add(firstSlot + time.Duration(i)*slotSpacing)
}

// SimulatedFailures is the worker's SIMULATED_FAILURES for this run: the
// primary attempt of the instance meant to fall back fails.
func (r Run) SimulatedFailures() string {
	var specs []string
	for _, m := range Cast {
		if m.Action == ApproveThenFail {
			specs = append(specs, r.InstanceID(m.Instance)+":"+string(workflows.SlotPrimary))
		}
	}
	return strings.Join(specs, ",")
}

// FleetFile renders the demo fleet file of this run.
func (r Run) FleetFile() ([]byte, error) {
	tmpl, err := template.New("demo fleet").Option("missingkey=error").Parse(fleetTemplate)
	if err != nil {
		return nil, err
	}
	slots := make([]string, slotsPerRegion)
	for i := range slots {
		slots[i] = r.Slot(i).Format(time.RFC3339)
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, map[string]any{
		"Run":         r.ID,
		"PeriodStart": r.start.Format(time.RFC3339),
		"PeriodEnd":   r.start.Add(periodEnd).Format(time.RFC3339),
		"Regions":     regions,
		"Slots":       slots,
		"Window":      window.String(),
	})
	return buf.Bytes(), err
}

// Fleet parses the rendered demo fleet file like any other.
func (r Run) Fleet() (*fleet.Fleet, error) {
	data, err := r.FleetFile()
	if err != nil {
		return nil, fmt.Errorf("render the demo fleet: %w", err)
	}
	fl, err := fleet.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("the demo fleet: %w", err)
	}
	return fl, nil
}
