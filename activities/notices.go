package activities

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// noticeAudience is who a notice addresses: the recipient roles read from
// Postgres when it is sent, and the audience stored with its in-product
// alert. Extra recipients are mail-only addresses an admin added, not users
// of the product, so an alert for admins + extra is shown to admins only.
type noticeAudience struct {
	Name          string
	Roles         []string // recipients.role values
	AlertAudience string   // in_product_alerts.audience
}

var (
	noticeAudienceAdminsExtra = noticeAudience{Name: "admins+extra", Roles: []string{store.RoleAdmin, store.RoleExtra}, AlertAudience: "admins"}
	noticeAudienceAdminsUsers = noticeAudience{Name: "admins+users", Roles: []string{store.RoleAdmin, store.RoleUser}, AlertAudience: "admins+users"}
)

// noticeBanner is the coloured strip at the top of an email, so a reader
// knows what kind of mail it is before reading it. The seed sends
// scheduling mail with a light-blue banner; the other categories follow the
// usual traffic-light reading: green done, amber under way or changed by
// the system, red did not happen or needs attention.
type noticeBanner struct {
	Category   string
	Label      string
	Background string // CSS colour of the banner
	Foreground string // CSS colour of its text, readable on Background
}

var (
	noticeBannerScheduling = noticeBanner{Category: "scheduling", Label: "Service update scheduling", Background: "#d6eaf8", Foreground: "#0b3d66"}
	noticeBannerProgress   = noticeBanner{Category: "in-progress", Label: "Service update in progress", Background: "#fdebc8", Foreground: "#6b4500"}
	noticeBannerSuccess    = noticeBanner{Category: "success", Label: "Service update completed", Background: "#d8f0dc", Foreground: "#14532d"}
	noticeBannerFailure    = noticeBanner{Category: "failure", Label: "Service update not completed", Background: "#f9d7d7", Foreground: "#7f1d1d"}
)

// noticeAlertRule says when a notice also writes an in-product alert.
type noticeAlertRule int

const (
	noticeAlertNever noticeAlertRule = iota
	noticeAlertAlways
	// noticeAlertSevenDayReminderWhenApproved: the seed's schedule shows an
	// in-product alert for the 7-day reminder of an approved update only.
	noticeAlertSevenDayReminderWhenApproved
)

// noticeSevenDays is the reminder offset that carries an in-product alert.
const noticeSevenDays = 7 * 24 * time.Hour

// applies reports whether the rule writes an alert for in.
func (r noticeAlertRule) applies(in workflows.SendNoticeInput) bool {
	switch r {
	case noticeAlertAlways:
		return true
	case noticeAlertSevenDayReminderWhenApproved:
		approved := in.Update.ApprovedBy != "" || in.Update.Status == workflows.StatusApproved
		return in.Offset == noticeSevenDays && approved
	default:
		return false
	}
}

// noticeSpec is one row of the communications table.
type noticeSpec struct {
	// Template names the per-kind files templates/<Template>.html.tmpl and
	// templates/<Template>.txt.tmpl.
	Template string
	Audience noticeAudience
	Email    bool
	Alert    noticeAlertRule
	Banner   noticeBanner
}

// noticeReminderSpec is the row every reminder kind ("reminder-30d", or
// "reminder-2m" on a compressed demo clock) shares.
var noticeReminderSpec = noticeSpec{Template: "reminder", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertSevenDayReminderWhenApproved, Banner: noticeBannerScheduling}

// noticeSpecs is DESIGN.md's "Communications" table, as data. Reminders are
// matched by workflows.NoticeKind.IsReminder and use noticeReminderSpec.
var noticeSpecs = map[workflows.NoticeKind]noticeSpec{
	workflows.NoticeScheduled:   {Template: "scheduled", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertAlways, Banner: noticeBannerScheduling},
	workflows.NoticeDayOf:       {Template: "day-of", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertNever, Banner: noticeBannerScheduling},
	workflows.NoticeConfirmed:   {Template: "confirmed", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertNever, Banner: noticeBannerScheduling},
	workflows.NoticeRescheduled: {Template: "rescheduled", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertNever, Banner: noticeBannerScheduling},
	workflows.NoticeInProgress:  {Template: "in-progress", Audience: noticeAudienceAdminsUsers, Email: false, Alert: noticeAlertAlways, Banner: noticeBannerProgress},
	workflows.NoticeSucceeded:   {Template: "succeeded", Audience: noticeAudienceAdminsUsers, Email: true, Alert: noticeAlertNever, Banner: noticeBannerSuccess},
	workflows.NoticeFallback:    {Template: "fallback", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertNever, Banner: noticeBannerProgress},
	workflows.NoticeFailed:      {Template: "failed", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertNever, Banner: noticeBannerFailure},
	workflows.NoticeNotApproved: {Template: "not-approved", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertNever, Banner: noticeBannerFailure},
	workflows.NoticeCancelled:   {Template: "cancelled", Audience: noticeAudienceAdminsExtra, Email: true, Alert: noticeAlertNever, Banner: noticeBannerFailure},
}

// noticeSpecFor looks up the row for kind.
func noticeSpecFor(kind workflows.NoticeKind) (noticeSpec, error) {
	if kind.IsReminder() {
		return noticeReminderSpec, nil
	}
	if spec, ok := noticeSpecs[kind]; ok {
		return spec, nil
	}
	return noticeSpec{}, fmt.Errorf("notice kind %q is unknown; accepted: %s", kind, strings.Join(noticeKindNames(), ", "))
}

// noticeKindNames lists the accepted kinds for error messages.
func noticeKindNames() []string {
	names := make([]string, 0, len(noticeSpecs)+1)
	for kind := range noticeSpecs {
		names = append(names, string(kind))
	}
	sort.Strings(names)
	return append(names, "reminder-<offset> (e.g. "+string(workflows.ReminderKind(30*24*time.Hour))+")")
}
