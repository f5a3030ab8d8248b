package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/internal/store"
)

// The read commands print text for people or, with -o json, the documents
// below for scripts. Their field names are a contract (README "Output for
// scripts"; golden files in testdata/json): add fields, never rename.

// outputFormat is the value of -o/--output.
type outputFormat string

const (
	textOutput outputFormat = "text"
	jsonOutput outputFormat = "json"
)

func (f *outputFormat) String() string { return string(*f) }

func (f *outputFormat) Type() string { return "text|json" }

func (f *outputFormat) Set(value string) error {
	switch outputFormat(value) {
	case textOutput, jsonOutput:
		*f = outputFormat(value)
		return nil
	}
	return fmt.Errorf("%q is not an output format (accepted: text, json)", value)
}

// outputFlag defines -o/--output on a read command.
func outputFlag(cmd *cobra.Command) *outputFormat {
	format := textOutput
	cmd.Flags().VarP(&format, "output", "o", "output format: text, or json for scripts")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return &format
}

// writeJSON writes one indented document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// updateJSON is one line of `list -o json` (JSON Lines: one update a line).
type updateJSON struct {
	WorkflowID     string    `json:"workflowId"`
	InstanceID     string    `json:"instanceId"`
	TenantID       string    `json:"tenantId"`
	TargetVersion  string    `json:"targetVersion"`
	Status         string    `json:"status"` // empty when the search attribute is unset
	Mandatory      bool      `json:"mandatory"`
	ScheduledStart time.Time `json:"scheduledStart,omitzero"`
	Execution      string    `json:"execution"` // Running, Completed, Terminated, ...
	Started        time.Time `json:"started,omitzero"`
	Closed         time.Time `json:"closed,omitzero"`
}

func newUpdateJSON(u updateSummary) updateJSON {
	return updateJSON{
		WorkflowID: u.WorkflowID, InstanceID: u.InstanceID, TenantID: u.TenantID, TargetVersion: u.TargetVersion,
		Status: string(u.Status), Mandatory: u.Mandatory, ScheduledStart: u.ScheduledStart.UTC(),
		Execution: executionName(u.Execution), Started: u.Started.UTC(), Closed: u.Closed.UTC(),
	}
}

// countJSON is `list --count -o json`: how many updates the filter
// selects, in total and per status (every status, zero included; "unknown"
// counts updates without the search attribute).
type countJSON struct {
	Total    int64            `json:"total"`
	Statuses map[string]int64 `json:"statuses"`
}

// slotsJSON is `slots -o json`.
type slotsJSON struct {
	Version    string     `json:"version"`
	Slots      []slotJSON `json:"slots"`
	Capacity   int        `json:"capacity"`
	Booked     int        `json:"booked"`
	Free       int        `json:"free"`
	Mismatches []string   `json:"mismatches"` // slots whose booked count and open reservations differ
}

type slotJSON struct {
	Region       string            `json:"region"`
	Start        time.Time         `json:"start"`
	Window       string            `json:"window"` // a Go duration, such as 12h0m0s
	Capacity     int               `json:"capacity"`
	Booked       int               `json:"booked"`
	Free         int               `json:"free"`
	Reservations []reservationJSON `json:"reservations"`
}

type reservationJSON struct {
	Role       string `json:"role"`
	WorkflowID string `json:"workflowId"`
	Status     string `json:"status"` // the update's last recorded status; empty when none is recorded
	Held       bool   `json:"held"`   // an open update holds the place
}

func newSlotsJSON(version string, slots []store.SlotRow, mismatches []string) slotsJSON {
	doc := slotsJSON{Version: version, Slots: []slotJSON{}, Mismatches: mismatches}
	if doc.Mismatches == nil {
		doc.Mismatches = []string{}
	}
	for _, s := range slots {
		row := slotJSON{Region: s.Region, Start: s.Start.UTC(), Window: s.Window.String(), Capacity: s.Capacity,
			Booked: s.Booked, Free: max(s.Capacity-s.Booked, 0), Reservations: []reservationJSON{}}
		for _, r := range s.Reservations {
			row.Reservations = append(row.Reservations, reservationJSON{Role: string(r.Role), WorkflowID: r.WorkflowID, Status: string(r.Status), Held: r.Open()})
		}
		doc.Slots = append(doc.Slots, row)
		doc.Capacity += s.Capacity
		doc.Booked += s.Booked
	}
	doc.Free = max(doc.Capacity-doc.Booked, 0)
	return doc
}

// loadJSON is `load -o json`: what the load changed.
type loadJSON struct {
	Releases          store.FleetLoadCounts `json:"releases"`
	Slots             store.FleetLoadCounts `json:"slots"`
	Tenants           store.FleetLoadCounts `json:"tenants"`
	Instances         store.FleetLoadCounts `json:"instances"`
	RecipientsAdded   int                   `json:"recipientsAdded"`
	RecipientsRemoved int                   `json:"recipientsRemoved"`
	AdminsChanged     []string              `json:"adminsChanged"` // instances whose admins changed
	KeptVersions      []keptVersionJSON     `json:"keptVersions"`
}

type keptVersionJSON struct {
	InstanceID     string `json:"instanceId"`
	FileVersion    string `json:"fileVersion"`
	CurrentVersion string `json:"currentVersion"`
}

func newLoadJSON(r store.FleetLoadReport) loadJSON {
	doc := loadJSON{Releases: r.Releases, Slots: r.Slots, Tenants: r.Tenants, Instances: r.Instances,
		RecipientsAdded: r.RecipientsAdded, RecipientsRemoved: r.RecipientsRemoved,
		AdminsChanged: []string{}, KeptVersions: []keptVersionJSON{}}
	for _, c := range r.AdminChanges {
		doc.AdminsChanged = append(doc.AdminsChanged, c.InstanceID)
	}
	for _, k := range r.KeptVersions {
		doc.KeptVersions = append(doc.KeptVersions, keptVersionJSON{InstanceID: k.InstanceID, FileVersion: k.FileVersion, CurrentVersion: k.CurrentVersion})
	}
	return doc
}

// rolloutJSON is `rollout -o json` (with --dry-run, the plan).
type rolloutJSON struct {
	Version    string          `json:"version"`
	DryRun     bool            `json:"dryRun"`
	Candidates []candidateJSON `json:"candidates"` // the noteworthy ones: planned, failed, held, no capacity, superseding
	Counts     map[string]int  `json:"counts"`     // per outcome: started, already-running, not-eligible, ...
}

type candidateJSON struct {
	InstanceID string `json:"instanceId"`
	Outcome    string `json:"outcome"`
	Detail     string `json:"detail"`
}

// outcomeKey is an outcome's name as a JSON key: "already-running".
func outcomeKey(o outcome) string { return strings.ReplaceAll(outcomeNames[o], " ", "-") }

// document is the summary as rolloutJSON, counting what write counts.
func (s *outcomeSummary) document(version string, dryRun bool) rolloutJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc := rolloutJSON{Version: version, DryRun: dryRun, Candidates: []candidateJSON{}, Counts: map[string]int{}}
	for _, d := range s.details {
		doc.Candidates = append(doc.Candidates, candidateJSON{InstanceID: d.InstanceID, Outcome: outcomeKey(d.Outcome), Detail: d.Detail})
	}
	for o := range outcomeCount {
		if (dryRun && o == outcomeStarted) || (!dryRun && o == outcomePlanned) {
			continue
		}
		doc.Counts[outcomeKey(o)] = s.counts[o]
	}
	return doc
}
