package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/workflow"
)

// window renders one of the update's slots; an unknown zone (validated
// away at start, but rendering must never fail a query) falls back to UTC.
func (w *serviceUpdate) window(role SlotRole) Window {
	start := w.slotStart(role)
	end := start.Add(w.slotWindow(role))
	win, err := NewWindow(start, end, w.in.Instance.TimeZone)
	if err != nil {
		win, _ = NewWindow(start, end, "UTC")
	}
	return win
}

func (w *serviceUpdate) view(ctx workflow.Context) StatusView {
	return w.viewAt(workflow.GetInfo(ctx).WorkflowExecution.ID, workflow.Now(ctx))
}

// viewAt is the view of workflow workflowID at now; the starter renders
// the announcement with it before the workflow runs (AnnouncementCommit).
func (w *serviceUpdate) viewAt(workflowID string, now time.Time) StatusView {
	return StatusView{
		WorkflowID:     workflowID,
		InstanceID:     w.in.Instance.ID,
		InstanceName:   w.in.Instance.Name,
		TenantID:       w.in.Instance.TenantID,
		Admins:         slices.Clone(w.admins),
		AdminCount:     len(w.admins),
		CurrentVersion: w.in.CurrentVersion,
		OfferedVersion: w.in.TargetVersion,
		TargetVersion:  w.targetVersion,
		Mandatory:      w.mandatory,
		Held:           w.held,
		Status:         w.status,
		Primary:        w.window(SlotPrimary),
		Secondary:      w.window(SlotSecondary),
		ReleasePeriod:  w.release,
		ApprovedBy:     w.approvedBy,
		ApprovedAt:     w.approvedAt,
		Approvals:      slices.Clone(w.approvals),
		Attempts:       slices.Clone(w.attempts),
		Notices:        slices.Clone(w.notices),
		Upcoming:       w.upcoming(now),
		// Set when the update closed so.
		AlreadyUpToDate: w.foundVersion != "",
		FoundVersion:    w.foundVersion,
		SupersededBy:    w.supersededBy,
	}
}

// queryView is the Status query's answer: the view without the admins'
// addresses and with every approver masked, since anyone allowed to query
// the workflow reads it. The starter reads the admins from Postgres.
func (w *serviceUpdate) queryView(ctx workflow.Context) StatusView {
	v := w.view(ctx)
	v.Admins = nil
	v.ApprovedBy = MaskEmail(v.ApprovedBy)
	for i := range v.Approvals {
		v.Approvals[i].By = MaskEmail(v.Approvals[i].By)
	}
	return v
}

// MaskEmail keeps an address recognisable to whoever knows it and
// useless to harvest: the first letter and the domain, as
// "a***@contoso.example". Empty stays empty.
func MaskEmail(address string) string {
	if address == "" {
		return ""
	}
	local, domain, found := strings.Cut(address, "@")
	first, _ := utf8.DecodeRuneInString(local)
	masked := string(first) + "***"
	if found {
		masked += "@" + domain
	}
	return masked
}

// upcoming lists the notices still due at now, earliest first. On the
// lean lifecycle reminders stay in w.reminders when they come due (the
// dispatcher sends them), so those before now are left out.
func (w *serviceUpdate) upcoming(now time.Time) []NoticeRecord {
	upcoming := []NoticeRecord{}
	switch w.status {
	case StatusScheduled, StatusApproved:
		for _, r := range w.reminders {
			if (r.Offset == 0 && !w.mayRun()) || (w.lean && r.At.Before(now)) {
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

// currentDetails is what the Web UI shows as the workflow's current
// details: the status, the summary line as the schedule stands now, the
// primary start in UTC, the secondary slot and who approved.
func (w *serviceUpdate) currentDetails() string {
	primary, secondary := w.window(SlotPrimary), w.window(SlotSecondary)
	line := fmt.Sprintf("%s — %s (%s UTC), secondary %s",
		w.status, SummaryLine(w.in.Instance, w.in.CurrentVersion, w.targetVersion, w.mandatory, w.primaryStart),
		primary.Start.Format(timeLayout), secondary.LocalStart)
	if w.approvedBy != "" {
		line += fmt.Sprintf("; approved by %s", MaskEmail(w.approvedBy))
	}
	switch {
	case w.foundVersion != "":
		line += fmt.Sprintf("; already up to date: the instance runs %s, nothing was run", w.foundVersion)
	case w.supersededBy != "":
		line += fmt.Sprintf("; superseded by the update to %s", w.supersededBy)
	}
	return line
}

// SummaryLine is the one line the Web UI's current details lead with,
// e.g. "contoso-prod: 9.1.0 → 9.2.0, mandatory, primary Tue 3 Mar 2026
// 02:00 CET": Summary and the primary start in the instance's zone, or in
// UTC if the zone is unknown.
func SummaryLine(instance Instance, currentVersion, targetVersion string, mandatory bool, primaryStart time.Time) string {
	loc, err := time.LoadLocation(instance.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	return fmt.Sprintf("%s, primary %s", Summary(instance, currentVersion, targetVersion, mandatory), primaryStart.In(loc).Format(LocalTimeLayout))
}

// Summary is the static summary the starter gives an update, e.g.
// "contoso-prod: 9.1.0 → 9.2.0, needs approval": no schedule, which a
// Reschedule changes and a static summary could not follow (the current
// details carry it).
func Summary(instance Instance, currentVersion, targetVersion string, mandatory bool) string {
	policy := "needs approval"
	if mandatory {
		policy = "mandatory"
	}
	return fmt.Sprintf("%s: %s → %s, %s", instance.ID, currentVersion, targetVersion, policy)
}
