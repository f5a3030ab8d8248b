package workflows

import "time"

// The contract continued: the lean lifecycle (changeLeanLifecycle) writes
// each transition in one local activity, CommitTransition, and leaves
// emails to the worker's outbox dispatcher.

// ActivityCommitTransition writes one transition in one transaction; the
// lean lifecycle runs it as a local activity.
const ActivityCommitTransition = "CommitTransition"

// CommitTransitionInput is one transition of the lean lifecycle: its
// audit row and projection (Transition), the notices it queues, the
// reminders that stand from now on, and the slot and version bookkeeping
// of a close, all written together or not at all.
type CommitTransitionInput struct {
	Transition RecordTransitionInput `json:"transition"`
	// At is the workflow's time of the transition: notices are due then,
	// and queued reminders due later than At are withdrawn before
	// Reminders are queued.
	At time.Time `json:"at"`
	// Notices are queued for the dispatcher, due at At.
	Notices []SendNoticeInput `json:"notices,omitempty"`
	// Reminders are every reminder still due for the schedule as it now
	// stands, each due at its DueAt; empty once the update started,
	// declined or closed.
	Reminders []QueuedReminder `json:"reminders,omitempty"`
	// ReleaseSlots gives every reservation of the update back.
	ReleaseSlots bool `json:"releaseSlots,omitempty"`
	// RecordVersion records the target as the version the instance runs.
	RecordVersion string `json:"recordVersion,omitempty"`
	// IdempotencyKey, when set, keys the commit; otherwise the run and the
	// local activity's ID do. The announcement has one (AnnouncementKey),
	// as both the starter and the workflow write it.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
}

// QueuedReminder is a reminder the dispatcher sends at DueAt.
type QueuedReminder struct {
	DueAt  time.Time       `json:"dueAt"`
	Notice SendNoticeInput `json:"notice"`
}

// CommitTransitionResult identifies the audit row written (or found, when
// a retried commit had written it already).
type CommitTransitionResult struct {
	AuditID  int64 `json:"auditId"`
	Released int   `json:"released,omitempty"`
}
