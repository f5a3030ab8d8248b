package notice

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/svcupdate/svcupdate/workflows"
)

// Group is one kind of recipient an instance has, as the fleet file lists
// them: its admins, its users and the extra recipients an admin added.
type Group int

const (
	Admins Group = iota + 1
	Users
	ExtraRecipients
)

// Audience is who a notice addresses: the recipient groups read from
// Postgres when it is sent, and the audience stored with its in-product
// alert. Extra recipients are mail-only addresses an admin added, not users
// of the product, so an alert for admins + extra is shown to admins only.
type Audience struct {
	Name          string
	Groups        []Group
	AlertAudience string // in_product_alerts.audience
}

var (
	adminsExtra = Audience{Name: "admins+extra", Groups: []Group{Admins, ExtraRecipients}, AlertAudience: "admins"}
	adminsUsers = Audience{Name: "admins+users", Groups: []Group{Admins, Users}, AlertAudience: "admins+users"}
)

// Banner is the coloured strip at the top of an email, so a reader knows
// what kind of mail it is before reading it. The seed sends scheduling mail
// with a light-blue banner; the other categories follow the usual
// traffic-light reading: green done, amber under way or changed by the
// system, red did not happen or needs attention.
type Banner struct {
	Category   string
	Label      string
	Background string // CSS colour of the banner
	Foreground string // CSS colour of its text, readable on Background
}

var (
	bannerScheduling = Banner{Category: "scheduling", Label: "Service update scheduling", Background: "#d6eaf8", Foreground: "#0b3d66"}
	bannerProgress   = Banner{Category: "in-progress", Label: "Service update in progress", Background: "#fdebc8", Foreground: "#6b4500"}
	bannerSuccess    = Banner{Category: "success", Label: "Service update completed", Background: "#d8f0dc", Foreground: "#14532d"}
	bannerFailure    = Banner{Category: "failure", Label: "Service update not completed", Background: "#f9d7d7", Foreground: "#7f1d1d"}
)

// AlertRule says when a notice also writes an in-product alert.
type AlertRule int

const (
	alertNever AlertRule = iota
	alertAlways
	// alertSevenDayReminderWhenApproved: the seed's schedule shows an
	// in-product alert for the 7-day reminder of an approved update only.
	alertSevenDayReminderWhenApproved
)

// sevenDays is the reminder offset that carries an in-product alert.
const sevenDays = 7 * 24 * time.Hour

// Applies reports whether the rule writes an alert for in.
func (r AlertRule) Applies(in workflows.SendNoticeInput) bool {
	switch r {
	case alertAlways:
		return true
	case alertSevenDayReminderWhenApproved:
		approved := in.Update.ApprovedBy != "" || in.Update.Status == workflows.StatusApproved
		return in.Offset == sevenDays && approved
	default:
		return false
	}
}

// Spec is one row of the communications table.
type Spec struct {
	// Template names the per-kind files templates/<Template>.html.tmpl and
	// templates/<Template>.txt.tmpl.
	Template string
	Audience Audience
	Email    bool
	Alert    AlertRule
	Banner   Banner
	// Actions: the email carries the admins' action links (approve,
	// choose other slots, view) as the update allows.
	Actions bool
	// OffersSlots: the email lists the next slots with room.
	OffersSlots bool
	// Invite: the email carries a calendar file for the primary window
	// (a request, or a cancel).
	Invite InviteMethod
}

// reminderSpec is the row every reminder kind ("reminder-30d", or
// "reminder-2m" on a compressed demo clock) shares.
var reminderSpec = Spec{Template: "reminder", Audience: adminsExtra, Email: true, Alert: alertSevenDayReminderWhenApproved, Banner: bannerScheduling, Actions: true}

// specs is DESIGN.md's "Communications" table, as data. Reminders are
// matched by workflows.NoticeKind.IsReminder and use reminderSpec.
var specs = map[workflows.NoticeKind]Spec{
	workflows.NoticeScheduled:   {Template: "scheduled", Audience: adminsExtra, Email: true, Alert: alertAlways, Banner: bannerScheduling, Actions: true, Invite: InviteRequest},
	workflows.NoticeDayOf:       {Template: "day-of", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerScheduling, Actions: true},
	workflows.NoticeConfirmed:   {Template: "confirmed", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerScheduling, Invite: InviteRequest},
	workflows.NoticeRescheduled: {Template: "rescheduled", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerScheduling, Invite: InviteRequest},
	workflows.NoticeInProgress:  {Template: "in-progress", Audience: adminsUsers, Email: false, Alert: alertAlways, Banner: bannerProgress},
	workflows.NoticeSucceeded:   {Template: "succeeded", Audience: adminsUsers, Email: true, Alert: alertNever, Banner: bannerSuccess},
	workflows.NoticeFallback:    {Template: "fallback", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerProgress, Actions: true},
	workflows.NoticeFailed:      {Template: "failed", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerFailure, Actions: true, OffersSlots: true},
	workflows.NoticeNotApproved: {Template: "not-approved", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerFailure, Actions: true, OffersSlots: true},
	workflows.NoticeCancelled:   {Template: "cancelled", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerFailure, Invite: InviteCancel},
	// A newer update replaces this one and is announced next: scheduling
	// news, not a failure.
	workflows.NoticeSuperseded: {Template: "superseded", Audience: adminsExtra, Email: true, Alert: alertNever, Banner: bannerScheduling, Invite: InviteCancel},
	// The provider moved the slots: the admins may approve or move it
	// again, and get an in-product alert as for a new schedule.
	workflows.NoticeMoved: {Template: "moved", Audience: adminsExtra, Email: true, Alert: alertAlways, Banner: bannerScheduling, Actions: true, Invite: InviteRequest},
}

// For looks up the row for kind.
func For(kind workflows.NoticeKind) (Spec, error) {
	if kind.IsReminder() {
		return reminderSpec, nil
	}
	if spec, ok := specs[kind]; ok {
		return spec, nil
	}
	return Spec{}, fmt.Errorf("notice kind %q is unknown; accepted: %s", kind, strings.Join(kindNames(), ", "))
}

// kindNames lists the accepted kinds for error messages.
func kindNames() []string {
	names := make([]string, 0, len(specs)+1)
	for kind := range specs {
		names = append(names, string(kind))
	}
	sort.Strings(names)
	return append(names, "reminder-<offset> (e.g. "+string(workflows.ReminderKind(30*24*time.Hour))+")")
}
