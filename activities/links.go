package activities

import (
	"context"
	"strings"
	"time"

	"github.com/svcupdate/svcupdate/activities/notice"
	"github.com/svcupdate/svcupdate/internal/links"
	"github.com/svcupdate/svcupdate/workflows"
)

// ActionLinks signs the admins' action links of the emails (approve,
// choose other slots, view the update), each bound to its recipient, the
// workflow and the action; the portal at BaseURL checks them.
type ActionLinks struct {
	Signer   *links.Signer
	BaseURL  string
	Lifetime time.Duration // capped by the notice's deadline
}

// EnableActionLinks makes the actionable emails carry each admin's links.
func (n *Notifier) EnableActionLinks(l ActionLinks) { n.links = &l }

// actionSubstitutions renders, for every recipient, the block that
// replaces the actions placeholders: an admin of the instance (as Postgres
// lists them now) gets their own links, anyone else a line saying who can
// act.
func (n *Notifier) actionSubstitutions(ctx context.Context, in workflows.SendNoticeInput, spec notice.Spec, recipients []string, timeZone string) (map[string]map[string]string, error) {
	listed, err := n.store.Recipients(ctx, in.Update.InstanceID)
	if err != nil {
		return nil, err
	}
	admins := make(map[string]bool, len(listed.Admins))
	for _, a := range listed.Admins {
		admins[strings.ToLower(a)] = true
	}
	now := n.now()
	expires := links.ActionExpiry(now, n.links.Lifetime, in.Deadline)
	approve, choose, view := notice.Links(in, spec)
	if !expires.After(now) {
		// The decision's deadline has passed: only a look remains.
		approve, choose, expires = false, false, now.Add(n.links.Lifetime)
	}
	subs := make(map[string]map[string]string, len(recipients))
	for _, to := range recipients {
		l := notice.ActionLinks{Expires: expires}
		if admins[strings.ToLower(to)] {
			mint := func(wanted bool, action string) (string, error) {
				if !wanted {
					return "", nil
				}
				token, err := n.links.Signer.Mint(links.Claims{Recipient: to, WorkflowID: in.WorkflowID, Action: action, Expires: expires})
				return n.links.BaseURL + "/link/" + token, err
			}
			if l.Approve, err = mint(approve, links.ActionApprove); err != nil {
				return nil, err
			}
			if l.Choose, err = mint(choose, links.ActionReschedule); err != nil {
				return nil, err
			}
			if l.View, err = mint(view, links.ActionView); err != nil {
				return nil, err
			}
		}
		if subs[to], err = notice.RenderActions(l, timeZone); err != nil {
			return nil, err
		}
	}
	return subs, nil
}

// freeSlots lists the next slots with room for the kinds that offer them.
func (n *Notifier) freeSlots(ctx context.Context, spec notice.Spec, region, version string) ([]notice.FreeSlot, error) {
	if !spec.OffersSlots {
		return nil, nil
	}
	free, err := n.store.FreeSlots(ctx, region, version, n.now())
	if err != nil {
		return nil, err
	}
	out := make([]notice.FreeSlot, len(free))
	for i, f := range free {
		out[i] = notice.FreeSlot{Version: f.Version, Start: f.Start, Window: f.Window}
	}
	return out, nil
}
