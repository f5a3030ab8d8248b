package portal

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// moment is one instant in the instance's zone and in UTC.
type moment struct{ Local, UTC string }

// updateView is one update as the pages show it.
type updateView struct {
	workflows.StatusView
	TimeZone        string
	Region          string
	StatusText      string
	PrimaryWindow   moment // start – end
	SecondaryWindow moment
	DecideBy        moment
	Open            bool // the schedule may still change
	CanApprove      bool
	Timeline        []timelineEntry
}

// Href is the update's page.
func (u updateView) Href() string { return "/update?id=" + url.QueryEscape(u.WorkflowID) }

type timelineEntry struct {
	At   time.Time
	What string
	When string
	Note string
	Done bool
}

// statusTexts words each status for admins.
var statusTexts = map[workflows.Status]string{
	workflows.StatusScheduled:         "Scheduled, awaiting approval",
	workflows.StatusApproved:          "Approved",
	workflows.StatusInProgress:        "In progress",
	workflows.StatusFallbackScheduled: "Moved to the secondary window",
	workflows.StatusSucceeded:         "Completed",
	workflows.StatusFailed:            "Failed",
	workflows.StatusNotApproved:       "Not approved",
	workflows.StatusCancelled:         "Cancelled",
	workflows.StatusSuperseded:        "Replaced by a newer update",
}

// newUpdateView renders v's times in timeZone (UTC when unknown).
func newUpdateView(v workflows.StatusView, region, timeZone string) updateView {
	loc, err := time.LoadLocation(timeZone)
	if err != nil {
		loc, timeZone = time.UTC, "UTC"
	}
	u := updateView{StatusView: v, TimeZone: timeZone, Region: region, StatusText: statusTexts[v.Status]}
	if u.StatusText == "" {
		u.StatusText = string(v.Status)
	}
	u.PrimaryWindow = windowMoment(v.Primary, loc)
	u.SecondaryWindow = windowMoment(v.Secondary, loc)
	u.DecideBy = at(deadline(v), loc)
	u.Open = !v.Status.Terminal() && v.Status != workflows.StatusInProgress && v.Status != workflows.StatusFallbackScheduled
	// A mandatory update runs without approval; an approved one needs none.
	u.CanApprove = v.Status == workflows.StatusScheduled && !v.Mandatory
	u.Timeline = timeline(v, loc)
	return u
}

// deadline is when the admin must decide: approve before the primary
// window starts; a missed approval can still be rescheduled until the
// release period ends.
func deadline(v workflows.StatusView) time.Time {
	if v.Status == workflows.StatusNotApproved || v.Status == workflows.StatusFailed {
		return v.ReleasePeriod.PeriodEnd
	}
	return v.Primary.Start
}

const pageTimeLayout = "Mon 2 Jan 2006 15:04 MST"

func at(t time.Time, loc *time.Location) moment {
	if t.IsZero() {
		return moment{Local: "—"}
	}
	return moment{Local: t.In(loc).Format(pageTimeLayout), UTC: t.UTC().Format(pageTimeLayout)}
}

func windowMoment(w workflows.Window, loc *time.Location) moment {
	if w.Start.IsZero() {
		return moment{Local: "—"}
	}
	end := w.End
	if !end.After(w.Start) {
		end = w.Start.Add(workflows.DefaultWindowLength)
	}
	return moment{
		Local: w.Start.In(loc).Format(pageTimeLayout) + " – " + end.In(loc).Format("15:04 MST"),
		UTC:   w.Start.UTC().Format(pageTimeLayout) + " – " + end.UTC().Format("15:04 MST"),
	}
}

// timeline merges notices sent, notices due, approvals and attempts.
func timeline(v workflows.StatusView, loc *time.Location) []timelineEntry {
	var out []timelineEntry
	add := func(t time.Time, what, note string, done bool) {
		out = append(out, timelineEntry{At: t, What: what, When: at(t, loc).Local, Note: note, Done: done})
	}
	for _, n := range v.Notices {
		note := ""
		if n.Error != "" {
			note = "not delivered"
		}
		add(n.At, "Notice sent: "+string(n.Kind), note, true)
	}
	for _, a := range v.Approvals {
		what := "Approved"
		if a.Action == "rescheduled" {
			what = "Moved to other slots (approved)"
		}
		add(a.At, what, "by "+a.By, true)
	}
	for _, a := range v.Attempts {
		outcome := a.Outcome
		if outcome == "" {
			outcome = "running"
		}
		add(a.Started, fmt.Sprintf("Attempt in the %s window", a.Slot), outcome, true)
	}
	for _, n := range v.Upcoming {
		add(n.At, "Notice due: "+string(n.Kind), "", false)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

type updatesPage struct {
	Updates []updateView
	Flash   string
}

func (s *Server) myUpdates(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	list, err := s.store.AdminUpdates(r.Context(), sess.Recipient)
	if err != nil {
		s.fail(w, r, "list updates", err)
		return
	}
	page := updatesPage{Flash: r.URL.Query().Get("done")}
	for _, u := range list {
		page.Updates = append(page.Updates, newUpdateView(u.View, u.Region, u.TimeZone))
	}
	s.render(w, r, http.StatusOK, "updates", "My updates", page)
}

// slotGroup is the slots of one release for the pickers.
type slotGroup struct {
	Version string
	Slots   []slotOption
}

type slotOption struct {
	Value string // version|RFC 3339 start
	Label string
	// Selected and SelectedSecondary preselect the update's own slots.
	Selected          bool
	SelectedSecondary bool
}

type updatePage struct {
	U     updateView
	Slots []slotGroup
	Flash string
}

func (s *Server) oneUpdate(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireSession(w, r)
	if !ok {
		return
	}
	u, ok := s.adminUpdate(w, r, sess.Recipient, r.URL.Query().Get("id"))
	if !ok {
		return
	}
	page := updatePage{U: u, Flash: r.URL.Query().Get("done")}
	if u.Open {
		free, err := s.store.FreeSlots(r.Context(), u.Region, u.TargetVersion, s.now().Add(s.cfg.RescheduleMinNotice))
		if err != nil {
			s.fail(w, r, "read free slots", err)
			return
		}
		page.Slots = slotGroups(free, u)
	}
	s.render(w, r, http.StatusOK, "update", u.InstanceName, page)
}

// adminUpdate reads the update live from its workflow (its last recorded
// state when the query fails) if email is an admin of its instance now.
func (s *Server) adminUpdate(w http.ResponseWriter, r *http.Request, email, workflowID string) (updateView, bool) {
	rec, err := s.store.AdminUpdateOf(r.Context(), email, workflowID)
	if errors.Is(err, store.ErrNotFound) {
		s.problem(w, r, http.StatusForbidden, problemNotAdmin)
		return updateView{}, false
	}
	if err != nil {
		s.fail(w, r, "read an update", err)
		return updateView{}, false
	}
	v := rec.View
	live, err := s.status(r, workflowID)
	var notReady *serviceerror.WorkflowNotReady
	switch {
	case err == nil:
		v = live
	case errors.As(err, &notReady):
		// Its first task is deferred while a rollout starts updates: the
		// recorded state is the announcement's, and current.
	default:
		s.logger.Warn("status query failed; showing the last recorded state", "workflowId", workflowID, "error", err)
	}
	return newUpdateView(v, rec.Region, rec.TimeZone), true
}

func (s *Server) status(r *http.Request, workflowID string) (workflows.StatusView, error) {
	var v workflows.StatusView
	resp, err := s.temporal.QueryWorkflow(r.Context(), workflowID, "", workflows.QueryStatus)
	if err == nil {
		err = resp.Get(&v)
	}
	return v, err
}

// slotGroups lays the free slots out per release, in the instance's zone.
func slotGroups(free []store.FreeSlot, u updateView) []slotGroup {
	loc, err := time.LoadLocation(u.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	var groups []slotGroup
	for _, f := range free {
		if len(groups) == 0 || groups[len(groups)-1].Version != f.Version {
			groups = append(groups, slotGroup{Version: f.Version})
		}
		g := &groups[len(groups)-1]
		end := f.Start.Add(f.Window)
		places := "places"
		if f.Free == 1 {
			places = "place"
		}
		g.Slots = append(g.Slots, slotOption{
			Value: slotValue(f.Version, f.Start),
			Label: fmt.Sprintf("%s – %s (%s UTC) · %d %s left", f.Start.In(loc).Format(pageTimeLayout), end.In(loc).Format("15:04 MST"),
				f.Start.UTC().Format("2 Jan 15:04"), f.Free, places),
			Selected:          f.Start.Equal(u.Primary.Start) && f.Version == u.TargetVersion,
			SelectedSecondary: f.Start.Equal(u.Secondary.Start) && f.Version == u.TargetVersion,
		})
	}
	return groups
}

func slotValue(version string, start time.Time) string {
	return version + "|" + start.UTC().Format(time.RFC3339)
}

// fail logs an unexpected error and shows the plain error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.logger.Error("portal: "+what, "path", r.URL.Path, "error", err)
	s.problem(w, r, http.StatusInternalServerError, problemInternal)
}

// timeZone loads name, UTC when unknown.
func timeZone(name string) *time.Location {
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return time.UTC
}
