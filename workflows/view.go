package workflows

import (
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/workflow"
)

// window renders a slot; an unknown zone (validated away at start, but
// rendering must never fail a query) falls back to UTC.
func (w *serviceUpdate) window(start time.Time) Window {
	end := start.Add(w.in.WindowLength)
	win, err := NewWindow(start, end, w.in.Instance.TimeZone)
	if err != nil {
		win, _ = NewWindow(start, end, "UTC")
	}
	return win
}

func (w *serviceUpdate) view(ctx workflow.Context) StatusView {
	return StatusView{
		WorkflowID:     workflow.GetInfo(ctx).WorkflowExecution.ID,
		InstanceID:     w.in.Instance.ID,
		InstanceName:   w.in.Instance.Name,
		TenantID:       w.in.Instance.TenantID,
		Admins:         slices.Clone(w.admins),
		CurrentVersion: w.in.CurrentVersion,
		OfferedVersion: w.in.TargetVersion,
		TargetVersion:  w.targetVersion,
		Mandatory:      w.in.Mandatory,
		Status:         w.status,
		Primary:        w.window(w.primaryStart),
		Secondary:      w.window(w.secondaryStart),
		ReleasePeriod:  w.release,
		ApprovedBy:     w.approvedBy,
		ApprovedAt:     w.approvedAt,
		Attempts:       slices.Clone(w.attempts),
		Notices:        slices.Clone(w.notices),
		Upcoming:       w.upcoming(),
	}
}

// upcoming lists the notices still due, earliest first.
func (w *serviceUpdate) upcoming() []NoticeRecord {
	upcoming := []NoticeRecord{}
	switch w.status {
	case StatusScheduled, StatusApproved:
		for _, r := range w.reminders {
			if r.Offset == 0 && !w.mayRun() {
				continue
			}
			upcoming = append(upcoming, NoticeRecord{Kind: r.Kind, At: r.At})
		}
		atStart := NoticeNotApproved
		if w.mayRun() {
			atStart = NoticeInProgress
		}
		upcoming = append(upcoming, NoticeRecord{Kind: atStart, At: w.primaryStart})
	case StatusFallbackScheduled:
		upcoming = append(upcoming, NoticeRecord{Kind: NoticeInProgress, At: w.secondaryStart})
	}
	return upcoming
}

// summary is the one line the Web UI shows for this workflow.
func (w *serviceUpdate) summary() string {
	primary, secondary := w.window(w.primaryStart), w.window(w.secondaryStart)
	policy := "optional"
	if w.in.Mandatory {
		policy = "mandatory"
	}
	line := fmt.Sprintf("%s: %s %s -> %s (%s); primary %s (%s UTC), secondary %s",
		w.status, w.in.Instance.ID, w.in.CurrentVersion, w.targetVersion, policy,
		primary.LocalStart, primary.Start.Format(timeLayout), secondary.LocalStart)
	if w.approvedBy != "" {
		line += fmt.Sprintf("; approved by %s", w.approvedBy)
	}
	return line
}
