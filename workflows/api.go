// Package workflows holds the ServiceUpdate workflow and its public contract:
// task queues, workflow, Update, query, activity and search-attribute names,
// every payload, and the workflow-ID helper. Every other package refers to
// these names through the constants here, never through string literals.
package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// Task queues.
const (
	// TaskQueue carries the workflow and every activity except the executor.
	TaskQueue = "service-updates"
	// ExecutorTaskQueue carries ApplyUpdate only, so a provider can host the
	// executor in its own worker, next to its own tooling.
	ExecutorTaskQueue = "service-update-executor"
	// AdminTaskQueue carries the store activities an admin's answer waits
	// for (a Reschedule's booking), so they never queue behind the bulk of
	// notices and audit rows a rollout produces. Every worker that runs
	// the store activities polls it too.
	AdminTaskQueue = "service-update-admin"
)

// WorkflowType is the registered name of the ServiceUpdate workflow.
const WorkflowType = "ServiceUpdate"

// Temporal Update names (admin and operator actions that need an answer).
const (
	UpdateApprove    = "Approve"
	UpdateReschedule = "Reschedule"
	// UpdateSetAdmins refreshes the admin list of a running workflow; `starter
	// load` sends it when an instance's admins change in the fleet file.
	UpdateSetAdmins = "SetAdmins"
	UpdateSupersede = "Supersede" // a rollout of a newer release closes an optional update not yet started
	UpdateMove      = "Move"      // a rollout's Resume moves a held wave's update to later slots
)

// QueryStatus returns a StatusView.
const QueryStatus = "Status"

// Activity names. Activities are registered under these names by the worker
// and called by name from the workflow, so workflows never import activities.
const (
	ActivityRecordTransition = "RecordTransition"
	ActivitySendNotice       = "SendNotice"
	ActivityBookSlots        = "BookSlots"
	ActivityReleaseSlots     = "ReleaseSlots"
	ActivityRecordVersion    = "RecordInstanceVersion"
	ActivityApplyUpdate      = "ApplyUpdate"
	ActivityCheckInstance    = "CheckInstance" // a local activity, before each attempt
	ActivityAbandonUpdate    = "AbandonUpdate" // gives back a rollout's claim on a refused input
	ActivityBookSlotsFrom    = "BookSlotsFrom" // books the earliest free pair from a time (Move)
)

// Application error types returned by activities. The workflow matches on
// them to answer an admin precisely; they are stable across releases.
const (
	ErrTypeSlotFull       = "SlotFull"
	ErrTypeSlotNotOffered = "SlotNotOffered"
	ErrTypeNotFound       = "NotFound"
	ErrTypeNoRecipients   = "NoRecipients"
	ErrTypeMailRejected   = "MailRejected"
	ErrTypeUpdateFailed   = "UpdateFailed"
	ErrTypeInvalidInput   = "InvalidInput"
	// ErrTypeWindowElapsed: the executor stopped because the window ends
	// (or had ended before it could start). Non-retryable: a retry could
	// start seconds before the window closes and outlive it. The attempt
	// is then window-elapsed, not failed.
	ErrTypeWindowElapsed = "WindowElapsed"
	// ErrTypeInstanceHeld: another open update holds the instance (one
	// open update per instance); the message names it.
	ErrTypeInstanceHeld = "InstanceHeld"
)

// Search attributes kept current on every transition.
var (
	SearchAttrUpdateStatus   = temporal.NewSearchAttributeKeyKeyword("UpdateStatus")
	SearchAttrInstanceID     = temporal.NewSearchAttributeKeyKeyword("InstanceId")
	SearchAttrTenantID       = temporal.NewSearchAttributeKeyKeyword("TenantId")
	SearchAttrTargetVersion  = temporal.NewSearchAttributeKeyKeyword("TargetVersion")
	SearchAttrScheduledStart = temporal.NewSearchAttributeKeyTime("ScheduledStart")
	SearchAttrMandatory      = temporal.NewSearchAttributeKeyBool("Mandatory")
)

// SearchAttributeKeys lists every custom search attribute, for registering
// them with a server (`starter setup`) and for the compose/Makefile checks.
var SearchAttributeKeys = []temporal.SearchAttributeKey{
	SearchAttrUpdateStatus, SearchAttrInstanceID, SearchAttrTenantID,
	SearchAttrTargetVersion, SearchAttrScheduledStart, SearchAttrMandatory, SearchAttrRolloutPhase,
}

// Status is the lifecycle state of one service update.
type Status string

const (
	StatusScheduled         Status = "Scheduled"
	StatusApproved          Status = "Approved"
	StatusInProgress        Status = "InProgress"
	StatusFallbackScheduled Status = "FallbackScheduled"
	StatusSucceeded         Status = "Succeeded"
	StatusFailed            Status = "Failed"
	StatusNotApproved       Status = "NotApproved"
	StatusCancelled         Status = "Cancelled"
	// StatusSuperseded closes an update that a newer one of the same
	// instance replaced; only one update per instance is open at a time.
	StatusSuperseded Status = "Superseded"
)

// AllStatuses lists every status in lifecycle order (for CLI validation and
// summaries).
var AllStatuses = []Status{
	StatusScheduled, StatusApproved, StatusInProgress, StatusFallbackScheduled,
	StatusSucceeded, StatusFailed, StatusNotApproved, StatusCancelled, StatusSuperseded,
}

// Terminal reports whether no further transition can follow s.
func (s Status) Terminal() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusNotApproved, StatusCancelled, StatusSuperseded:
		return true
	}
	return false
}

// NoticeKind names one communication of the schedule in DESIGN.md.
// Reminders carry their offset: "reminder-30d"; offset 0 is NoticeDayOf.
type NoticeKind string

const (
	NoticeScheduled   NoticeKind = "scheduled"
	NoticeDayOf       NoticeKind = "day-of"
	NoticeConfirmed   NoticeKind = "confirmed"
	NoticeRescheduled NoticeKind = "rescheduled"
	NoticeInProgress  NoticeKind = "in-progress"
	NoticeSucceeded   NoticeKind = "succeeded"
	NoticeFallback    NoticeKind = "fallback"
	NoticeFailed      NoticeKind = "failed"
	NoticeNotApproved NoticeKind = "not-approved"
	NoticeCancelled   NoticeKind = "cancelled"
	NoticeSuperseded  NoticeKind = "superseded"
	NoticeMoved       NoticeKind = "moved" // a rollout moved the update to later slots
)

// reminderPrefix starts the kind of every reminder notice.
const reminderPrefix = "reminder-"

// ReminderKind names the reminder sent offset before the primary slot:
// whole days as "reminder-30d", shorter offsets (compressed demo clocks) as
// hours, minutes or seconds; offset 0 is the day-of notice.
func ReminderKind(offset time.Duration) NoticeKind {
	switch {
	case offset <= 0:
		return NoticeDayOf
	case offset%(24*time.Hour) == 0:
		return NoticeKind(fmt.Sprintf("%s%dd", reminderPrefix, offset/(24*time.Hour)))
	case offset%time.Hour == 0:
		return NoticeKind(fmt.Sprintf("%s%dh", reminderPrefix, offset/time.Hour))
	case offset%time.Minute == 0:
		return NoticeKind(fmt.Sprintf("%s%dm", reminderPrefix, offset/time.Minute))
	default:
		return NoticeKind(fmt.Sprintf("%s%ds", reminderPrefix, offset/time.Second))
	}
}

// IsReminder reports whether k is a reminder (any offset, not day-of).
func (k NoticeKind) IsReminder() bool { return strings.HasPrefix(string(k), reminderPrefix) }

// SlotRole says which of an update's two slots is meant.
type SlotRole string

const (
	SlotPrimary   SlotRole = "primary"
	SlotSecondary SlotRole = "secondary"
)

// Attempt outcomes.
const (
	OutcomeSucceeded     = "succeeded"
	OutcomeFailed        = "failed"
	OutcomeWindowElapsed = "window-elapsed"
	OutcomeCancelled     = "cancelled"
)

// Audit channels: how a transition was caused.
const (
	ChannelWorkflow = "workflow"        // the workflow itself (timers, attempts)
	ChannelUpdate   = "temporal-update" // an admin Update accepted before assertions existed
	ChannelOperator = "operator"        // cancellation through Temporal
)

// ActorSystem is the audit actor for transitions nobody asked for.
const ActorSystem = "system"

// ActorOperator is the audit actor for an operator's cancellation through
// Temporal (which does not say who cancelled).
const ActorOperator = "operator"

// Defaults resolved into an Input when a workflow is started
// (Input.WithDefaults), so a running workflow never sees a later change of
// them: it carries the values it started with.
var DefaultReminderOffsets = []time.Duration{
	90 * 24 * time.Hour, 30 * 24 * time.Hour, 15 * 24 * time.Hour, 7 * 24 * time.Hour, 0,
}

const DefaultWindowLength = 12 * time.Hour

// WorkflowID is the ID of the update of one instance to one target version,
// so a rollout re-run never starts a second workflow for the same pair.
func WorkflowID(instanceID, targetVersion string) string {
	return "service-update:" + instanceID + ":" + targetVersion
}

// Instance is the part of an instance a running workflow needs.
type Instance struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	TenantID string `json:"tenantId"`
	Kind     string `json:"kind"`     // production | sandbox
	Region   string `json:"region"`   // slots are offered per region
	TimeZone string `json:"timeZone"` // IANA name, for rendering windows
}

// ReleaseOption is a release the update may target: the one first offered
// and every later one an admin may choose instead.
type ReleaseOption struct {
	Version     string    `json:"version"`
	PeriodStart time.Time `json:"periodStart"`
	PeriodEnd   time.Time `json:"periodEnd"`
}

// Input starts a ServiceUpdate. It carries everything that must not change
// under a running workflow; a new worker configuration never alters it.
type Input struct {
	Instance       Instance `json:"instance"`
	Admins         []string `json:"admins"`
	CurrentVersion string   `json:"currentVersion"`
	TargetVersion  string   `json:"targetVersion"`
	// Mandatory is set for instances two or more versions behind (n-2):
	// the update runs without approval.
	Mandatory      bool      `json:"mandatory"`
	PrimaryStart   time.Time `json:"primaryStart"`
	SecondaryStart time.Time `json:"secondaryStart"`
	// Releases holds TargetVersion and every later release, oldest first;
	// their periods bound the slots an admin may pick.
	Releases        []ReleaseOption `json:"releases"`
	ReminderOffsets []time.Duration `json:"reminderOffsets,omitempty"` // default DefaultReminderOffsets
	// WindowLength is the primary slot's window (default
	// DefaultWindowLength); in inputs of release 1, every slot's.
	WindowLength time.Duration `json:"windowLength,omitempty"`
	// SecondaryWindowLength is the secondary slot's window; zero (inputs
	// of release 1) means WindowLength.
	SecondaryWindowLength time.Duration `json:"secondaryWindowLength,omitempty"`
	// Slots are the slots every release in Releases offers in the
	// instance's region, so that a slot chosen by a Reschedule runs for
	// its own window. Inputs of release 1 have none: every slot then has
	// WindowLength.
	Slots []OfferedSlot `json:"slots,omitempty"`
	// SecondaryMinGap is the least time between the end of the primary
	// window and the start of the secondary slot.
	SecondaryMinGap time.Duration `json:"secondaryMinGap,omitempty"`
	// RescheduleMinNotice is the least time from a Reschedule to the new
	// primary slot's start (RESCHEDULE_MIN_NOTICE when the rollout started
	// the update; zero in updates started before it existed).
	RescheduleMinNotice time.Duration `json:"rescheduleMinNotice,omitempty"`
	// LeanLifecycle starts the workflow on the lean lifecycle without
	// asking workflow.GetVersion, which would cost every update a marker,
	// a TemporalChangeVersion upsert and a visibility write in its first
	// task. WithDefaults sets it; inputs from before it ask GetVersion.
	LeanLifecycle bool `json:"leanLifecycle,omitempty"`
}

// OfferedSlot is one update window a release offers in a region.
type OfferedSlot struct {
	Version      string        `json:"version"`
	Start        time.Time     `json:"start"`
	WindowLength time.Duration `json:"windowLength"`
}

// WithDefaults fills the fields in left empty with the current defaults
// and puts the update on the lean lifecycle.
// The starter calls it on every Input it starts a workflow with, so the
// workflow never applies a default of its own: a deploy that changes a
// default changes new workflows only.
func (in Input) WithDefaults() Input {
	if len(in.ReminderOffsets) == 0 {
		in.ReminderOffsets = slices.Clone(DefaultReminderOffsets)
	}
	if in.WindowLength == 0 {
		in.WindowLength = DefaultWindowLength
	}
	if in.SecondaryWindowLength == 0 {
		in.SecondaryWindowLength = in.WindowLength
	}
	in.LeanLifecycle = true
	return in
}

// Result is what a closed workflow returns.
type Result struct {
	Status       Status    `json:"status"`
	FinalVersion string    `json:"finalVersion"`
	Attempts     []Attempt `json:"attempts"`
}

// ApproveInput is the Approve Update's payload.
type ApproveInput struct {
	Admin string `json:"admin"`
	Note  string `json:"note,omitempty"`
	// Assertion proves who acts (package internal/actor): signed by a key
	// the worker trusts, for this workflow and action "approve", its actor
	// Admin.
	Assertion string `json:"assertion,omitempty"`
}

// RescheduleInput is the Reschedule Update's payload. It implies approval.
type RescheduleInput struct {
	Admin          string    `json:"admin"`
	PrimaryStart   time.Time `json:"primaryStart"`
	SecondaryStart time.Time `json:"secondaryStart"`
	TargetVersion  string    `json:"targetVersion,omitempty"` // empty keeps the current target
	// Assertion proves who acts, as in ApproveInput; action "reschedule".
	Assertion string `json:"assertion,omitempty"`
}

// SetAdminsInput is the SetAdmins Update's payload.
type SetAdminsInput struct {
	Admins []string `json:"admins"`
	// Assertion proves who acts, as in ApproveInput; action "set-admins".
	Assertion string `json:"assertion,omitempty"`
}

// Window is one update slot, in UTC and rendered in the instance's zone.
type Window struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	TimeZone   string    `json:"timeZone"`
	LocalStart string    `json:"localStart"` // e.g. "2026-03-29 01:00 CET"
	LocalEnd   string    `json:"localEnd"`
}

// Approval is one admin decision on the schedule: an Approve, or a
// Reschedule, which implies approval.
type Approval struct {
	By string `json:"by"`
	// Operator names the operator who acted for By, if one did.
	Operator string    `json:"operator,omitempty"`
	At       time.Time `json:"at"`
	Action   string    `json:"action"`  // "approved" or "rescheduled", as in the audit log
	Channel  string    `json:"channel"` // a Channel constant, or the assertion's channel (actor.Channel)
	// Detail is the approval's note, or the schedule a Reschedule chose.
	Detail string `json:"detail,omitempty"`
}

// Attempt is one execution of the update in a slot.
type Attempt struct {
	Slot     SlotRole  `json:"slot"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Outcome  string    `json:"outcome,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// NoticeRecord is a notice sent (or, in Upcoming, due).
type NoticeRecord struct {
	Kind NoticeKind `json:"kind"`
	At   time.Time  `json:"at"`
	// Error is set when the notice could not be delivered (no recipient,
	// rejected by the mail provider); the lifecycle goes on regardless.
	Error string `json:"error,omitempty"`
	// Queued: on the lean lifecycle the notice was queued at At for the
	// worker's dispatcher; its delivery is in Postgres (starter status).
	Queued bool `json:"queued,omitempty"`
}

// StatusView is the Status query's answer and what Approve, Reschedule and
// SetAdmins return.
type StatusView struct {
	WorkflowID   string `json:"workflowId"`
	InstanceID   string `json:"instanceId"`
	InstanceName string `json:"instanceName"`
	TenantID     string `json:"tenantId"`
	// Admins lists the admins' addresses, except in the Status query's
	// answer, which anyone who may query reads: there only AdminCount is
	// set, and ApprovedBy and Approvals are masked (MaskEmail).
	Admins         []string      `json:"admins,omitempty"`
	AdminCount     int           `json:"adminCount"`
	CurrentVersion string        `json:"currentVersion"`
	OfferedVersion string        `json:"offeredVersion"` // the version the workflow was started for
	TargetVersion  string        `json:"targetVersion"`
	Mandatory      bool          `json:"mandatory"`
	Status         Status        `json:"status"`
	Primary        Window        `json:"primary"`
	Secondary      Window        `json:"secondary"`
	ReleasePeriod  ReleaseOption `json:"releasePeriod"`
	ApprovedBy     string        `json:"approvedBy,omitempty"` // the last of Approvals
	ApprovedAt     time.Time     `json:"approvedAt,omitzero"`
	// Approvals holds every Approve and accepted Reschedule, oldest first.
	Approvals []Approval     `json:"approvals,omitempty"`
	Attempts  []Attempt      `json:"attempts"`
	Notices   []NoticeRecord `json:"notices"`
	Upcoming  []NoticeRecord `json:"upcoming"`
	// Set at the close: Succeeded without running, as the instance already ran FoundVersion (the
	// target or a later release); Superseded by the update to the version SupersededBy.
	AlreadyUpToDate bool   `json:"alreadyUpToDate,omitempty"`
	FoundVersion    string `json:"foundVersion,omitempty"`
	SupersededBy    string `json:"supersededBy,omitempty"`
	// Held: at its slot's start, waiting for its rollout wave's gate.
	Held bool `json:"held,omitempty"`
}

// RecordTransitionInput writes one audit row and refreshes the updates
// projection from Snapshot, in one transaction.
type RecordTransitionInput struct {
	Actor string `json:"actor"` // admin email, ActorSystem or "operator"
	// Operator names the operator who acted for Actor (channel
	// operator-cli), if one did.
	Operator string     `json:"operator,omitempty"`
	Channel  string     `json:"channel"` // a Channel constant, or the assertion's channel (actor.Channel)
	Action   string     `json:"action"`  // e.g. "approved", "rescheduled", "attempt-failed"
	From     Status     `json:"from"`
	Detail   string     `json:"detail,omitempty"`
	Snapshot StatusView `json:"snapshot"`
}

// RecordTransitionResult identifies the audit row written (or found, when a
// retried activity had written it already).
type RecordTransitionResult struct {
	AuditID int64 `json:"auditId"`
}

// SendNoticeInput asks for one notice to every recipient its kind addresses.
// A notice is (WorkflowID, Kind, SlotStart, Sequence) to the outbox, so a
// retried or re-run activity sends once, while a reminder re-armed by a
// reschedule (new SlotStart) or a second reschedule to the same primary
// (new Sequence) is sent again.
type SendNoticeInput struct {
	WorkflowID string     `json:"workflowId"`
	Kind       NoticeKind `json:"kind"`
	// Offset is the reminder offset for reminder and day-of notices.
	Offset    time.Duration `json:"offset,omitempty"`
	SlotStart time.Time     `json:"slotStart"`
	// Sequence tells apart rescheduled notices for one primary start: it
	// counts the accepted Reschedules of the update that chose the same
	// primary start before this one (A to B to C to B: 0, 0, 1), so each
	// is sent. 0 for every other notice, and for every notice of a
	// history recorded before it existed.
	Sequence int `json:"sequence,omitempty"`
	// Deadline is what the admin must act by (approval before the primary
	// slot; reschedule before the release period ends).
	Deadline time.Time  `json:"deadline"`
	Update   StatusView `json:"update"`
}

// SendNoticeResult says what was sent.
type SendNoticeResult struct {
	Recipients int  `json:"recipients"`
	Emailed    bool `json:"emailed"`   // false in outbox mode or when the kind has no email
	Alerted    bool `json:"alerted"`   // an in-product alert was written
	Duplicate  bool `json:"duplicate"` // the outbox already had it sent
	// Superseded: a later notice of the same kind and slot (a higher
	// Sequence) was sent instead; this one was not.
	Superseded bool   `json:"superseded,omitempty"`
	MessageID  string `json:"messageId,omitempty"`
}
