package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/workflows"
)

// BookSlotsFrom moves an update's reservations to the earliest free
// primary and secondary slot pair whose primary starts at or after
// in.From (see workflows.BookSlotsFromInput), in one transaction that
// gives the old places back. An update whose primary already starts at
// or after in.From keeps its pair, so a retried move books nothing twice.
// It fails with ErrNoCapacity when no pair fits, with a *HeldError when
// another open update holds the instance, and then changes nothing.
func (s *Store) BookSlotsFrom(ctx context.Context, in workflows.BookSlotsFromInput) (workflows.BookSlotsFromResult, error) {
	var res workflows.BookSlotsFromResult
	if in.InstanceID == "" || in.Region == "" || in.OfferedVersion == "" || in.TargetVersion == "" || in.From.IsZero() {
		return res, errorf(ErrInvalidRequest, "book slots from a time: instanceId, region, offeredVersion, targetVersion and from required")
	}
	workflowID := in.WorkflowID
	if workflowID == "" {
		workflowID = workflows.WorkflowID(in.InstanceID, in.OfferedVersion)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockUpdate(ctx, tx, in.InstanceID, in.OfferedVersion); err != nil {
			return err
		}
		other, held, err := holder(ctx, tx, in.InstanceID, workflowID)
		if err != nil {
			return err
		}
		if held {
			return &HeldError{InstanceID: in.InstanceID, Holder: other}
		}
		primary, secondary, err := bookPair(ctx, tx, BookRolloutSlotsParams{
			InstanceID: in.InstanceID, Version: in.OfferedVersion, TargetVersion: in.TargetVersion,
			SecondaryMinGap: in.SecondaryMinGap, Until: in.Until,
			// Slots are taken when they start after Now; a microsecond
			// before From (Postgres's precision) lets a slot at From in.
			Now: in.From.Add(-time.Microsecond),
		}, in.Region, workflowID)
		if errors.Is(err, ErrNoCapacity) {
			until := ""
			if !in.Until.IsZero() {
				until = ", both windows ending by " + timeText(in.Until)
			}
			return errorf(ErrNoCapacity, "no free primary and secondary slot pair of %s in region %s from %s (secondary at least %s after the primary window%s) for instance %q",
				in.TargetVersion, in.Region, timeText(in.From), config.FormatDuration(in.SecondaryMinGap), until, in.InstanceID)
		}
		if err != nil {
			return err
		}
		res = workflows.BookSlotsFromResult{
			PrimaryStart: primary.Start.UTC(), PrimaryWindow: primary.Window,
			SecondaryStart: secondary.Start.UTC(), SecondaryWindow: secondary.Window,
		}
		return nil
	})
	return res, err
}
