package workflows

import (
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"
	"golang.org/x/mod/semver"

	"github.com/svcupdate/svcupdate/internal/actor"
)

// Supersede: a rollout of a newer release meets the instance held by this
// update. An optional update that has not started gives way: it closes as
// Superseded, its reservations released and its admins told, so the newer
// update can be booked. A mandatory one, or one that started, never does.

func (w *serviceUpdate) validateSupersede(ctx workflow.Context, in SupersedeInput) error {
	if strings.TrimSpace(in.RequestedBy) == "" {
		return errors.New("requestedBy is empty: name who supersedes the update (such as the rollout and its operator)")
	}
	if err := w.authorizeSupersede(ctx, in); err != nil {
		return err
	}
	if err := w.refuseSupersede(); err != nil {
		return err
	}
	if !NewerVersion(w.in.Releases, in.TargetVersion, w.targetVersion) {
		return fmt.Errorf("target version %q is not newer than this update's target %s; only an update to a later release supersedes it",
			in.TargetVersion, w.targetVersion)
	}
	return nil
}

// authorizeSupersede checks who closes the update for a newer one.
func (w *serviceUpdate) authorizeSupersede(ctx workflow.Context, in SupersedeInput) error {
	return w.authorizeProvider(ctx, in.Assertion, actor.ActionSupersede, in.RequestedBy, "superseded")
}

// authorizeProvider is authorize for what the provider does to an update
// (Supersede, Move): a rollout or an operator, whose assertion names the
// requester. done completes "an update is ... by a rollout".
func (w *serviceUpdate) authorizeProvider(ctx workflow.Context, assertion, action, requestedBy, done string) error {
	claims, err := w.authorize(ctx, assertion, action)
	if err != nil {
		return err
	}
	if claims.Channel != actor.ChannelRollout && claims.Channel != actor.ChannelOperatorCLI {
		return fmt.Errorf("an update is %s by a rollout or an operator (channel %s or %s), not through %s",
			done, actor.ChannelRollout, actor.ChannelOperatorCLI, claims.Channel)
	}
	if strings.TrimSpace(requestedBy) != strings.TrimSpace(claims.Actor) {
		return fmt.Errorf("the request names %q but its assertion was signed for %q", requestedBy, claims.Actor)
	}
	return nil
}

// refuseSupersede explains why the state no longer lets the update be
// superseded, or returns nil while it does.
func (w *serviceUpdate) refuseSupersede() error {
	if err := w.refuseChanges("superseded"); err != nil {
		return err
	}
	if w.mandatory {
		return fmt.Errorf("the update to %s is mandatory and is never superseded; roll the newer release out to instance %s once it has closed",
			w.targetVersion, w.in.Instance.ID)
	}
	return nil
}

// supersede closes the update in favour of a newer one. It answers once
// the Superseded status is recorded (so the instance is free for the
// newer update) and the reservations are given back; the main flow,
// woken, then finishes.
func (w *serviceUpdate) supersede(ctx workflow.Context, in SupersedeInput) (StatusView, error) {
	// Spends the assertion's nonce before the first blocking call; a
	// Supersede accepted before assertions existed carries none.
	if _, err := w.admit(in.Assertion, in.RequestedBy); err != nil {
		return StatusView{}, err
	}
	// Waits for a release under way (an unapproved update's), which the
	// not-approved row must precede.
	if err := w.lockToBook(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	// Only state can have changed while this waited: an attempt started,
	// a cancellation, a check at the slot's start made it mandatory.
	if err := w.refuseSupersede(); err != nil {
		return StatusView{}, err
	}
	// No older history holds a Supersede, so there is no old branch: the
	// marker only dates this path for a later change of it.
	workflow.GetVersion(ctx, changeSupersede, 1, 1)
	from := w.status
	w.status, w.closing = StatusSuperseded, true
	w.supersededBy = in.TargetVersion
	// The schedule is void: this wakes the main flow and drops a reminder
	// that waits for the mutex.
	w.scheduleVersion++
	released := w.startReleaseUnlessLean(ctx)
	if err := w.record(ctx, from, change{action: actionSuperseded, actor: in.RequestedBy, channel: ChannelOperator,
		detail: "superseded by the update to " + in.TargetVersion, notice: NoticeSuperseded, slotStart: w.primaryStart, releaseSlots: w.lean}); err != nil {
		return StatusView{}, err
	}
	if released != nil {
		if err := w.settleRelease(ctx, released); err != nil {
			return StatusView{}, err
		}
	}
	return w.view(ctx), nil
}

// NewerVersion reports whether version is a later release than current:
// by their order in releases when both are listed there (the release
// history is the authority), otherwise by semantic version, which is how
// release versions are written (MAJOR.MINOR.PATCH, fleet file).
func NewerVersion(releases []ReleaseOption, version, current string) bool {
	_, at, listed := FindRelease(releases, version)
	_, currentAt, currentListed := FindRelease(releases, current)
	if listed && currentListed {
		return at > currentAt
	}
	return semver.IsValid("v"+version) && semver.Compare("v"+version, "v"+current) > 0
}
