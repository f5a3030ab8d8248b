package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/svcupdate/svcupdate/internal/launch"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/starter/internal/progress"
)

// releasePlan is what one rollout run by the starter itself does (the
// demo's): the plan of every start, how many at once, which instances.
type releasePlan struct {
	// Plan is what every start shares: the version, the schedule of every
	// update (from the configuration or the demo), dry run, and SlotsFrom,
	// which the demo sets to its own first slot so slots of an earlier,
	// interrupted demo run are not taken.
	launch.Plan
	Concurrency int
	// Output is how the summary is printed (zero: text).
	Output outputFormat
	// Instances limits the rollout to these instance IDs (the demo's own);
	// nil means the whole fleet.
	Instances map[string]bool
}

// outcomeSummary counts outcomes and keeps the reasons worth reading.
type outcomeSummary struct {
	mu      sync.Mutex
	counts  [launch.OutcomeCount]int
	details []launch.Result // failures, held, no capacity, dry-run plans, starts left unsettled
}

func (s *outcomeSummary) add(r launch.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[r.Outcome]++
	switch {
	case r.Outcome == launch.Failed, r.Outcome == launch.Held, r.Outcome == launch.NoCapacity, r.Outcome == launch.Planned,
		r.Superseded.WorkflowID != "",
		// Started or running, with something left to settle.
		(r.Outcome == launch.Started || r.Outcome == launch.AlreadyRunning) && r.Detail != "":
		s.details = append(s.details, r)
	}
}

func (s *outcomeSummary) count(o launch.Outcome) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[o]
}

// write prints one line per noteworthy candidate, then the counts.
func (s *outcomeSummary) write(w io.Writer, version string, dryRun bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.details {
		fmt.Fprintf(w, "  %-32s %-12s %s\n", d.InstanceID, d.Outcome.String(), d.Detail)
	}
	total := 0
	var parts []string
	for o := range launch.OutcomeCount {
		if (dryRun && o == launch.Started) || (!dryRun && o == launch.Planned) || o == launch.NotAttempted {
			continue // a dry run starts nothing; a real one plans nothing
		}
		total += s.counts[o]
		parts = append(parts, fmt.Sprintf("%s %d", o.String(), s.counts[o]))
	}
	verb := "rollout"
	if dryRun {
		verb = "dry run (nothing booked, nothing started)"
	}
	interrupted := ""
	if n := s.counts[launch.NotAttempted]; n > 0 {
		total += n
		interrupted = fmt.Sprintf("; interrupted before %d (not attempted): run rollout again to continue", n)
	}
	fmt.Fprintf(w, "%s of %s, %d candidate(s): %s%s\n", verb, version, total, strings.Join(parts, ", "), interrupted)
}

// rollout books slots for and starts the update of every eligible
// candidate, Concurrency at a time, and prints the summary.
func rollout(ctx context.Context, e *env, plan releasePlan) (*outcomeSummary, error) {
	pool, err := e.postgres(ctx)
	if err != nil {
		return nil, err
	}
	st := store.New(pool)
	candidates, err := st.RolloutCandidates(ctx, plan.Version)
	if err != nil {
		return nil, fmt.Errorf("find the candidates for %s: %w", plan.Version, err)
	}
	if plan.Instances != nil {
		kept := candidates[:0]
		for _, c := range candidates {
			if plan.Instances[c.Instance.ID] {
				kept = append(kept, c)
			}
		}
		candidates = kept
	}
	c, err := e.temporal(ctx)
	if err != nil {
		return nil, err
	}

	bar := progress.New(e.stderr, "rollout "+plan.Version, len(candidates))
	summary := &outcomeSummary{}
	starter := &launch.Starter{Store: st, Client: c, TaskQueue: e.cfg.TaskQueue, Plan: plan.Plan,
		RequestedBy: "rollout of " + plan.Version + " by " + e.clientOptions().Identity, Signer: e.cfg.ActionSigningKey.Signer}
	// Sandboxes take the earliest slots: every sandbox is booked before the
	// first production instance.
	for _, wave := range kindWaves(candidates) {
		var g errgroup.Group
		g.SetLimit(plan.Concurrency)
		for _, candidate := range wave {
			if ctx.Err() != nil {
				// Interrupted (Ctrl-C): start nothing more, count the rest.
				summary.add(launch.Result{InstanceID: candidate.Instance.ID, Outcome: launch.NotAttempted})
				continue
			}
			g.Go(func() error {
				summary.add(starter.Start(ctx, candidate))
				bar.Add(1)
				return nil
			})
		}
		_ = g.Wait() // every goroutine returns nil; outcomes are in the summary
	}
	bar.Finish()
	if plan.Output == jsonOutput {
		if err := writeJSON(e.stdout, summary.document(plan.Version, plan.DryRun)); err != nil {
			return summary, err
		}
	} else {
		summary.write(e.stdout, plan.Version, plan.DryRun)
	}
	if err := ctx.Err(); err != nil {
		return summary, fmt.Errorf("rollout interrupted; run it again to continue: %w", err)
	}
	return summary, nil
}

// kindWaves splits the candidates (sandboxes first, as RolloutCandidates
// orders them) into runs of one kind.
func kindWaves(candidates []store.RolloutCandidate) [][]store.RolloutCandidate {
	var waves [][]store.RolloutCandidate
	for i, c := range candidates {
		if i == 0 || c.Instance.Kind != candidates[i-1].Instance.Kind {
			waves = append(waves, nil)
		}
		waves[len(waves)-1] = append(waves[len(waves)-1], c)
	}
	return waves
}
