package workflows

import "time"

// The contract continued: the payloads of the slot, version and executor
// activities, of the Supersede Update and of the activities added since
// release 2.

// SupersedeInput is the Supersede Update's payload: a rollout of a newer
// release asks an optional update that has not started to close as
// Superseded, so the newer update can hold the instance.
type SupersedeInput struct {
	// TargetVersion is the superseding update's target; it must be newer
	// than this update's target.
	TargetVersion string `json:"targetVersion"`
	// RequestedBy names who asks (recorded in the audit log), such as
	// "rollout of 9.3.0 by starter@host".
	RequestedBy string `json:"requestedBy"`
	// Assertion proves it: signed for RequestedBy, channel rollout or
	// operator-cli, action supersede, with a key the worker trusts.
	Assertion string `json:"assertion,omitempty"`
}

// CheckInstanceInput asks what the instance runs now and what the update
// policy asks of it for TargetVersion, against the releases Postgres
// holds now.
type CheckInstanceInput struct {
	InstanceID    string `json:"instanceId"`
	TargetVersion string `json:"targetVersion"`
}

// CheckInstanceResult is the instance as Postgres records it just before
// an attempt.
type CheckInstanceResult struct {
	CurrentVersion string `json:"currentVersion"`
	// UpToDate: the instance runs the target or a later release, so the
	// update is not needed.
	UpToDate bool `json:"upToDate,omitempty"`
	// Mandatory: the instance is two or more releases behind the target
	// (n-2), so the update runs without approval.
	Mandatory bool `json:"mandatory,omitempty"`
	// Held: the update's wave in its rollout is not open (its gate is
	// pending, held or aborted), so the attempt waits (see gate.go).
	// Checks recorded before waves existed have none.
	Held bool `json:"held,omitempty"`
}

// AbandonUpdateInput names the update whose reservations and claim on
// the instance a rollout made, to be given back.
type AbandonUpdateInput struct {
	InstanceID     string `json:"instanceId"`
	OfferedVersion string `json:"offeredVersion"`
}

// AbandonUpdateResult says how many reservations were given back.
type AbandonUpdateResult struct {
	Released int `json:"released"`
}

// BookSlotsInput books (or rebooks) both slots of an update. Reservations
// are keyed by (instance, offered version, role), so booking is idempotent
// and rebooking releases the previous reservation in the same transaction.
type BookSlotsInput struct {
	WorkflowID string `json:"workflowId"`
	InstanceID string `json:"instanceId"`
	Region     string `json:"region"`
	// OfferedVersion is the version the workflow was started for (part of
	// its ID); TargetVersion is the release whose slots are booked, later
	// when an admin chose a later target.
	OfferedVersion string    `json:"offeredVersion"`
	TargetVersion  string    `json:"targetVersion"`
	PrimaryStart   time.Time `json:"primaryStart"`
	SecondaryStart time.Time `json:"secondaryStart"`
}

// BookSlotsResult names the slot rows now reserved.
type BookSlotsResult struct {
	PrimarySlotID   int64 `json:"primarySlotId"`
	SecondarySlotID int64 `json:"secondarySlotId"`
}

// ReleaseSlotsInput releases every reservation of an update.
type ReleaseSlotsInput struct {
	InstanceID     string `json:"instanceId"`
	OfferedVersion string `json:"offeredVersion"`
}

// ReleaseSlotsResult says how many reservations were released.
type ReleaseSlotsResult struct {
	Released int `json:"released"`
}

// RecordVersionInput records the version an instance now runs.
type RecordVersionInput struct {
	InstanceID string `json:"instanceId"`
	Version    string `json:"version"`
}

// RecordVersionResult reports the version the instance ran before.
type RecordVersionResult struct {
	PreviousVersion string `json:"previousVersion"`
	// Unchanged: the instance already ran Version or a later release, so
	// nothing was recorded (versions only move forward).
	Unchanged bool `json:"unchanged,omitempty"`
}

// ApplyUpdateInput runs the update of one instance inside one window.
type ApplyUpdateInput struct {
	WorkflowID     string    `json:"workflowId"`
	InstanceID     string    `json:"instanceId"`
	TenantID       string    `json:"tenantId"`
	CurrentVersion string    `json:"currentVersion"`
	TargetVersion  string    `json:"targetVersion"`
	Attempt        SlotRole  `json:"attempt"`
	WindowEnd      time.Time `json:"windowEnd"`
}

// ApplyUpdateResult is a successful execution's report.
type ApplyUpdateResult struct {
	Output string `json:"output,omitempty"` // last lines of the executor's output
	// AlreadyCurrent: the version probe found the instance at or past the
	// target before the attempt, so the update was not run ("already up to
	// date"), for example after a worker was lost as its update finished.
	AlreadyCurrent bool `json:"alreadyCurrent,omitempty"`
	// ProbedVersion is the version the probe (EXECUTOR_PROBE_COMMAND)
	// reported last; empty without a probe.
	ProbedVersion string `json:"probedVersion,omitempty"`
}

// MoveInput is the Move Update's payload: a rollout whose wave was held
// moves the wave's updates that still wait for their slot (Scheduled or
// Approved) to the earliest free pair of slots starting at or after
// From. An approval is kept; the admins are told the new slots.
type MoveInput struct {
	From time.Time `json:"from"`
	// RequestedBy names who moves the update (recorded in the audit log),
	// such as "rollout of 9.2.0, resumed by ops@provider".
	RequestedBy string `json:"requestedBy"`
	Reason      string `json:"reason,omitempty"`
	// Assertion proves it: signed for RequestedBy, channel rollout or
	// operator-cli, action move, with a key the worker trusts.
	Assertion string `json:"assertion,omitempty"`
}

// BookSlotsFromInput books an update's earliest free primary and
// secondary slot pair of TargetVersion in Region with the primary
// starting at or after From, the secondary at least SecondaryMinGap after
// the primary window and both windows ending by Until, giving back what
// the update held. An update whose primary already starts at or after
// From keeps its slots, so a retry books nothing twice.
type BookSlotsFromInput struct {
	WorkflowID      string        `json:"workflowId"`
	InstanceID      string        `json:"instanceId"`
	Region          string        `json:"region"`
	OfferedVersion  string        `json:"offeredVersion"`
	TargetVersion   string        `json:"targetVersion"`
	From            time.Time     `json:"from"`
	SecondaryMinGap time.Duration `json:"secondaryMinGap"`
	Until           time.Time     `json:"until"`
}

// BookSlotsFromResult is the pair booked, each slot with its window.
type BookSlotsFromResult struct {
	PrimaryStart    time.Time     `json:"primaryStart"`
	PrimaryWindow   time.Duration `json:"primaryWindow"`
	SecondaryStart  time.Time     `json:"secondaryStart"`
	SecondaryWindow time.Duration `json:"secondaryWindow"`
}
