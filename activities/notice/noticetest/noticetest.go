// Package noticetest holds the notice every notice and notifier test
// renders: one fixed update, shaped per kind the way the workflow sends it.
package noticetest

import (
	"time"

	"github.com/svcupdate/svcupdate/workflows"
)

// InstanceID is the instance of Input's update.
const InstanceID = "inst-contoso-prod"

// offsets are the reminders Input knows, at the default offsets.
var offsets = map[workflows.NoticeKind]time.Duration{
	workflows.ReminderKind(90 * 24 * time.Hour): 90 * 24 * time.Hour,
	workflows.ReminderKind(30 * 24 * time.Hour): 30 * 24 * time.Hour,
	workflows.ReminderKind(15 * 24 * time.Hour): 15 * 24 * time.Hour,
	workflows.ReminderKind(7 * 24 * time.Hour):  7 * 24 * time.Hour,
}

// Input is one notice of a fixed update: 9.1.0 -> 9.2.0 for an instance in
// Berlin, primary window on Saturday 14 March 2026 at 22:00 CET.
func Input(kind workflows.NoticeKind) workflows.SendNoticeInput {
	primary := time.Date(2026, 3, 14, 21, 0, 0, 0, time.UTC)
	secondary := time.Date(2026, 3, 21, 21, 0, 0, 0, time.UTC)
	in := workflows.SendNoticeInput{
		WorkflowID: workflows.WorkflowID(InstanceID, "9.2.0"),
		Kind:       kind,
		SlotStart:  primary,
		Deadline:   primary,
		Update: workflows.StatusView{
			WorkflowID:     workflows.WorkflowID(InstanceID, "9.2.0"),
			InstanceID:     InstanceID,
			InstanceName:   "Contoso Sales",
			TenantID:       "contoso",
			CurrentVersion: "9.1.0",
			OfferedVersion: "9.2.0",
			TargetVersion:  "9.2.0",
			Status:         workflows.StatusScheduled,
			Primary:        workflows.Window{Start: primary, End: primary.Add(12 * time.Hour)},
			Secondary:      workflows.Window{Start: secondary, End: secondary.Add(12 * time.Hour)},
		},
	}
	approve := func() {
		in.Update.Status = workflows.StatusApproved
		in.Update.ApprovedBy = "ada@contoso.example"
		in.Update.ApprovedAt = primary.Add(-10 * 24 * time.Hour)
	}
	periodEnd := time.Date(2026, 5, 31, 22, 0, 0, 0, time.UTC)
	switch {
	case kind.IsReminder():
		in.Offset = offsets[kind]
		// The 7-day reminder is the one with an in-product alert, which
		// only an approved update gets.
		if in.Offset == 7*24*time.Hour {
			approve()
		}
	case kind == workflows.NoticeConfirmed, kind == workflows.NoticeRescheduled:
		approve()
		in.Deadline = periodEnd
	case kind == workflows.NoticeInProgress, kind == workflows.NoticeSucceeded:
		approve()
		in.Update.Status = workflows.StatusInProgress
	case kind == workflows.NoticeFallback:
		approve()
		in.SlotStart = secondary
		in.Update.Status = workflows.StatusFallbackScheduled
		in.Update.Attempts = []workflows.Attempt{{Slot: workflows.SlotPrimary, Started: primary, Finished: primary.Add(3 * time.Hour), Outcome: workflows.OutcomeFailed, Error: "schema upgrade step 4 of 9 timed out"}}
	case kind == workflows.NoticeFailed:
		approve()
		in.SlotStart = secondary
		in.Deadline = time.Time{} // a failure at the end of the period: no new attempt offered
		in.Update.Status = workflows.StatusFailed
		in.Update.Attempts = []workflows.Attempt{
			{Slot: workflows.SlotPrimary, Started: primary, Outcome: workflows.OutcomeFailed, Error: "schema upgrade step 4 of 9 timed out"},
			{Slot: workflows.SlotSecondary, Started: secondary, Outcome: workflows.OutcomeWindowElapsed, Error: "window ended before the update finished"},
		}
	case kind == workflows.NoticeNotApproved:
		in.Update.Status = workflows.StatusNotApproved
		in.Deadline = periodEnd
	case kind == workflows.NoticeCancelled:
		in.Update.Status = workflows.StatusCancelled
	case kind == workflows.NoticeSuperseded:
		in.Update.Status = workflows.StatusSuperseded
		in.Update.SupersededBy = "9.3.0"
	}
	return in
}
