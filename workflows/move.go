package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/internal/actor"
	"github.com/svcupdate/svcupdate/internal/duration"
)

// Move: the rollout of this update's release held its wave (too many
// failures before it), and its operator resumed it later: the update,
// still waiting for its slot, books the earliest free pair from a time.
// It keeps its approval (or lack of one) and its admins are told the new
// slots. An update that started, closed, or waits for a late Reschedule
// is not moved.

func (w *serviceUpdate) validateMove(ctx workflow.Context, in MoveInput) error {
	if strings.TrimSpace(in.RequestedBy) == "" {
		return errors.New("requestedBy is empty: name who moves the update (such as the rollout and its operator)")
	}
	if err := w.authorizeProvider(ctx, in.Assertion, actor.ActionMove, in.RequestedBy, "moved"); err != nil {
		return err
	}
	if err := w.refuseMove(); err != nil {
		return err
	}
	if now := workflow.Now(ctx); in.From.Before(now.Add(w.in.RescheduleMinNotice)) || !in.From.After(now) {
		return fmt.Errorf("from %s leaves the admins less notice than %s (now %s); move the update to %s or later",
			in.From.UTC().Format(timeLayout), duration.FormatDays(w.in.RescheduleMinNotice), now.UTC().Format(timeLayout),
			now.Add(max(w.in.RescheduleMinNotice, time.Minute)).UTC().Format(timeLayout))
	}
	if !w.primaryStart.Before(in.From) {
		return fmt.Errorf("the primary slot already starts at %s, at or after from %s: nothing to move",
			w.primaryStart.UTC().Format(timeLayout), in.From.UTC().Format(timeLayout))
	}
	if latest := w.latestPrimaryStart(); in.From.After(latest) {
		return fmt.Errorf("from %s leaves no room in the release period of %s: the last primary start that fits both windows before it ends at %s is %s",
			in.From.UTC().Format(timeLayout), w.targetVersion, w.release.PeriodEnd.UTC().Format(timeLayout), latest.UTC().Format(timeLayout))
	}
	return nil
}

// refuseMove explains why the state no longer lets the update be moved,
// or returns nil while it does.
func (w *serviceUpdate) refuseMove() error {
	if err := w.refuseChanges("moved"); err != nil {
		return err
	}
	if w.status != StatusScheduled && w.status != StatusApproved {
		return fmt.Errorf("the update is %s; only an update waiting for its slot (%s or %s) is moved", w.status, StatusScheduled, StatusApproved)
	}
	return nil
}

// move books the earliest free pair from in.From and takes it as the
// schedule; the main flow, woken, waits for the new primary start (or,
// held at the gate, goes there once its wave opens).
func (w *serviceUpdate) move(ctx workflow.Context, in MoveInput) (StatusView, error) {
	by, err := w.admit(in.Assertion, in.RequestedBy)
	if err != nil {
		return StatusView{}, err
	}
	if err := w.lockToBook(ctx); err != nil {
		return StatusView{}, err
	}
	defer w.mu.Unlock()
	if err := w.refuseMove(); err != nil {
		return StatusView{}, err
	}
	if now := workflow.Now(ctx); !in.From.After(now) {
		return StatusView{}, fmt.Errorf("from %s passed while the move waited its turn (now %s); move the update to a later time",
			in.From.UTC().Format(timeLayout), now.UTC().Format(timeLayout))
	}
	// No older history holds a Move: the marker dates this path for a
	// later change of it.
	workflow.GetVersion(ctx, changeMove, 1, 1)
	booked, err := w.bookSlotsFrom(ctx, in.From)
	if err != nil {
		return StatusView{}, err
	}
	// A cancellation that came while the booking ran wins: cancel gives
	// the slots back once this handler has returned.
	if err := w.refuseMove(); err != nil {
		return StatusView{}, err
	}
	from := w.status
	w.primaryStart, w.secondaryStart = booked.PrimaryStart.UTC(), booked.SecondaryStart.UTC()
	w.primaryWindow, w.secondaryWindow = booked.PrimaryWindow, booked.SecondaryWindow
	w.reminders = ReminderSchedule(w.primaryStart, w.in.ReminderOffsets, workflow.Now(ctx))
	w.scheduleVersion++
	detail := fmt.Sprintf("primary %s, secondary %s", w.primaryStart.Format(timeLayout), w.secondaryStart.Format(timeLayout))
	if in.Reason != "" {
		detail += ": " + in.Reason
	}
	err = w.record(ctx, from, change{action: actionMoved, actor: in.RequestedBy, operator: by.operator, channel: by.channel,
		detail: detail, notice: NoticeMoved, slotStart: w.primaryStart, deadline: w.primaryStart})
	return w.view(ctx), err
}

// bookSlotsFrom books the earliest free pair of the target release's
// slots from `from` in which both windows end within the release period.
func (w *serviceUpdate) bookSlotsFrom(ctx workflow.Context, from time.Time) (BookSlotsFromResult, error) {
	ctx = bookingOptions(ctx, "book slots from "+from.UTC().Format(timeLayout), ErrTypeSlotFull, ErrTypeInstanceHeld, ErrTypeNotFound, ErrTypeInvalidInput)
	var res BookSlotsFromResult
	err := workflow.ExecuteActivity(ctx, ActivityBookSlotsFrom, BookSlotsFromInput{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		InstanceID: w.in.Instance.ID, Region: w.in.Instance.Region,
		OfferedVersion: w.in.TargetVersion, TargetVersion: w.targetVersion,
		From: from.UTC(), SecondaryMinGap: w.in.SecondaryMinGap, Until: w.release.PeriodEnd,
	}).Get(ctx, &res)
	var appErr *temporal.ApplicationError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &appErr):
		return res, fmt.Errorf("the update was not moved: %s", appErr.Message())
	}
	return res, fmt.Errorf("the update was not moved, try again later: %w", err)
}
