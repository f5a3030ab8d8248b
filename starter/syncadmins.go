package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/starter/internal/progress"
	"github.com/svcupdate/svcupdate/workflows"
)

func newSyncAdminsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sync-admins [--instance I]... [--concurrency N]",
		Short: "send running updates their instance's admins from the database (retries what load could not tell them)",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	var instances instanceList
	fs.Var(&instances, "instance", "an instance whose running updates get its admins; repeat the flag for more (default: every instance with a running update)")
	concurrency := fs.Int("concurrency", 16, "how many instances are synced at once")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runSyncAdmins(cmd.Context(), e, instances, *concurrency)
	}
	return cmd
}

func runSyncAdmins(ctx context.Context, e *env, instances []string, concurrency int) error {
	if concurrency < 1 || concurrency > 1000 {
		return cli.Usagef("sync-admins: --concurrency %d is out of range (accepted: 1 to 1000)", concurrency)
	}
	pool, err := e.postgres(ctx)
	if err != nil {
		return err
	}
	c, err := e.temporal(ctx)
	if err != nil {
		return err
	}
	result, err := syncAdmins(ctx, e, store.New(pool), c, instances, concurrency, e.stdout)
	if err != nil {
		return err
	}
	result.write(e.stdout)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sync-admins interrupted; run it again to finish: %w", err)
	}
	if len(result.failed) > 0 {
		return fmt.Errorf("%d instance(s) kept their old admins in running updates (listed above); retry with: %s",
			len(result.failedInstances()), adminSyncCommand(result.failedInstances()))
	}
	return nil
}

// instanceList is a repeatable --instance flag.
type instanceList []string

func (l *instanceList) String() string { return strings.Join(*l, ",") }

func (l *instanceList) Type() string { return "ID" }

func (l *instanceList) Set(value string) error {
	if strings.TrimSpace(value) == "" {
		return errors.New("empty instance ID")
	}
	if !slices.Contains(*l, value) {
		*l = append(*l, value)
	}
	return nil
}

// adminSyncCommand is the command that retries sending the database's
// admins to the running updates of instances.
func adminSyncCommand(instances []string) string {
	var b strings.Builder
	b.WriteString("starter sync-admins")
	for _, id := range instances {
		b.WriteString(" --instance " + id)
	}
	return b.String()
}

// adminSyncResult counts what one sync did.
type adminSyncResult struct {
	mu        sync.Mutex
	instances int // instances whose running updates were looked at
	sent      int // updates that accepted SetAdmins
	closed    int // updates that closed between listing and sending
	failed    []adminSyncFailure
}

// adminSyncFailure is an instance (and, when known, its update) that kept
// its old admins.
type adminSyncFailure struct {
	InstanceID string
	WorkflowID string // empty when the instance's updates could not be listed
	Err        error
}

func (r *adminSyncResult) fail(f adminSyncFailure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, f)
}

// failedInstances lists the instances that failed, sorted, each once.
func (r *adminSyncResult) failedInstances() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for _, f := range r.failed {
		ids = append(ids, f.InstanceID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// write prints one line per failure, then the counts.
func (r *adminSyncResult) write(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.failed {
		fmt.Fprintf(w, "  %-32s failed  %v\n", f.InstanceID, f.Err)
	}
	fmt.Fprintf(w, "sync-admins, %d instance(s): sent %d, closed meanwhile %d, failed %d\n",
		r.instances, r.sent, r.closed, len(r.failed))
}

// syncAdmins sends SetAdmins, with the admins the database holds now, to
// every running update of instances (nil: of every instance with a running
// update), concurrency instances at a time. It prints a line per update
// told on lines and its progress on stderr; failures are in the result. The error is a failure to list the
// running updates of every instance, when nothing was sent.
func syncAdmins(ctx context.Context, e *env, st *store.Store, c client.Client, instances []string, concurrency int, lines io.Writer) (*adminSyncResult, error) {
	result := &adminSyncResult{}
	// Every instance's running updates, listed per instance or all at once.
	byInstance := map[string][]string{}
	if instances == nil {
		running, err := listUpdates(ctx, c, e.cfg.TemporalNamespace, updateFilter{RunningOnly: true})
		if err != nil {
			return nil, fmt.Errorf("find the running updates (nothing was sent): %w", err)
		}
		for _, u := range running {
			byInstance[u.InstanceID] = append(byInstance[u.InstanceID], u.WorkflowID)
			if !slices.Contains(instances, u.InstanceID) {
				instances = append(instances, u.InstanceID)
			}
		}
		slices.Sort(instances)
	}
	var out sync.Mutex // one line at a time
	bar := progress.New(e.stderr, "sync-admins", len(instances))
	defer bar.Finish()
	var g errgroup.Group
	g.SetLimit(concurrency)
	for _, id := range instances {
		if ctx.Err() != nil {
			break // interrupted: the caller says so and how to finish
		}
		result.mu.Lock()
		result.instances++
		result.mu.Unlock()
		g.Go(func() error {
			defer bar.Add(1)
			ids, listed := byInstance[id]
			if !listed {
				running, err := listUpdates(ctx, c, e.cfg.TemporalNamespace, updateFilter{InstanceID: id, RunningOnly: true})
				if err != nil {
					result.fail(adminSyncFailure{InstanceID: id, Err: err})
					return nil
				}
				for _, u := range running {
					ids = append(ids, u.WorkflowID)
				}
			}
			if len(ids) == 0 {
				return nil
			}
			recipients, err := st.Recipients(ctx, id)
			if err != nil {
				result.fail(adminSyncFailure{InstanceID: id, Err: fmt.Errorf("read its admins: %w", err)})
				return nil
			}
			for _, workflowID := range ids {
				err := sendSetAdmins(ctx, e, c, workflowID, recipients.Admins)
				result.mu.Lock()
				switch {
				case isNotFound(err):
					result.closed++ // a closed update's admins no longer matter
				case err != nil:
					result.failed = append(result.failed, adminSyncFailure{InstanceID: id, WorkflowID: workflowID,
						Err: updateError(workflowID, workflows.UpdateSetAdmins, err)})
				default:
					result.sent++
				}
				result.mu.Unlock()
				if err == nil {
					out.Lock()
					fmt.Fprintf(lines, "%s: admins now %v\n", workflowID, recipients.Admins)
					out.Unlock()
				}
			}
			return nil
		})
	}
	_ = g.Wait() // every goroutine returns nil; failures are in the result
	return result, nil
}

// sendSetAdmins runs one SetAdmins Update to completion and returns the
// server's error as it is, so a closed workflow can be told apart.
func sendSetAdmins(ctx context.Context, e *env, c client.Client, workflowID string, admins []string) error {
	input, err := e.signed(workflowID, workflows.SetAdminsInput{Admins: admins})
	if err != nil {
		return err
	}
	handle, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   workflowID,
		UpdateName:   workflows.UpdateSetAdmins,
		Args:         []any{input},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return handle.Get(ctx, nil)
}
