package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/svcupdate/svcupdate/internal/duration"
	"github.com/svcupdate/svcupdate/workflows"
)

// Steering the running rollout: --pause, --resume (with a move of the held
// waves: --move-to) and --abort, each a Temporal Update of the Rollout.

// parseMoveTo reads --move-to: an RFC 3339 time, a UTC time such as
// "2027-03-06 02:00", or a time from now such as 7d or 36h.
func parseMoveTo(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range localLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := duration.Parse(s); err == nil && d > 0 {
		// To the next whole minute, which reads better and stays ahead.
		t := now.Add(d).UTC()
		if whole := t.Truncate(time.Minute); whole.Before(t) {
			t = whole.Add(time.Minute)
		}
		return t, nil
	}
	return time.Time{}, errors.New(`not a time (accepted: RFC 3339 such as 2027-03-06T02:00:00Z, a UTC time such as "2027-03-06 02:00", or a time from now such as 7d)`)
}

// moveProgressInterval is how often resumeMoving looks at the move.
const moveProgressInterval = 2 * time.Second

// resumeMoving resumes the rollout with a move of its held waves and
// follows the move until it ends, then prints where the rollout stands:
// the wave open at its new slots, or paused again, naming what stayed.
// Ctrl-C only stops following.
func resumeMoving(ctx context.Context, e *env, c client.Client, version string, in workflows.ResumeInput) error {
	id := workflows.RolloutID(version)
	if _, err := sendRolloutUpdate(ctx, c, version, workflows.UpdateResume, in); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "moving the held waves' waiting updates to slots from %s...\n", in.MoveTo.Format(time.RFC3339))
	ticker := time.NewTicker(moveProgressInterval)
	defer ticker.Stop()
	for {
		p, err := queryProgress(ctx, c, id, "")
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(e.stderr, "\ndetached: the move goes on in the workers; see where it stands with: temporal workflow query --workflow-id %s --type %s\n", id, workflows.QueryProgress)
			return nil
		case err != nil:
			return fmt.Errorf("query the progress of %s: %w", id, err)
		case p.MovingTo.IsZero():
			printRollout(e.stdout, p)
			if p.Phase == workflows.PhasePaused {
				return fmt.Errorf("the rollout of %s is still paused: %s", version, p.Paused)
			}
			return nil
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
}

// steerRollout sends an operator's command to the running rollout and
// prints where it stands after it.
func steerRollout(ctx context.Context, e *env, c client.Client, version, update string, input any) error {
	p, err := sendRolloutUpdate(ctx, c, version, update, input)
	if err != nil {
		return err
	}
	printRollout(e.stdout, p)
	return nil
}

// sendRolloutUpdate sends an operator's command to the running rollout
// of version and returns its answer.
func sendRolloutUpdate(ctx context.Context, c client.Client, version, update string, input any) (workflows.RolloutProgress, error) {
	id := workflows.RolloutID(version)
	handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: update, Args: []any{input}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var p workflows.RolloutProgress
	if err == nil {
		err = handle.Get(ctx, &p)
	}
	if err != nil {
		return p, updateError(id, update, err)
	}
	return p, nil
}
