package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/time/rate"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/links"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// namedWorker is a worker and the task queue it polls, for messages.
type namedWorker struct {
	taskQueue string
	worker    worker.Worker
}

// workerSet is every worker of the process and where they report an error
// they cannot recover from.
type workerSet struct {
	workers []namedWorker
	fatal   chan error
	// dispatcher delivers the lean lifecycle's notice queue while the
	// workers run.
	dispatcher *activities.Dispatcher
	// dispatchLoops is NOTICE_DISPATCH_LOOPS.
	dispatchLoops int
}

// rolloutConcurrency is how many candidates of a rollout batch are booked
// and started at once: enough to keep ROLLOUT_START_RATE busy over the
// round trips to Postgres and Temporal. Each candidate spends part of its
// turn in Postgres (booking, announcement), so it takes twice the 32
// starts in flight that keep a server busy (32 left the bench's dev
// server a fifth idle).
const rolloutConcurrency = 64

// newWorkers builds the workers: the workflow with the store and
// notification activities on cfg.TaskQueue, and, unless EXECUTOR=none, the
// executor on its own queue so a provider can run it elsewhere.
func newWorkers(ctx context.Context, c client.Client, pool, rolloutPool *pgxpool.Pool, cfg config.Config, logger *slog.Logger, metrics client.MetricsHandler) (*workerSet, error) {
	set := &workerSet{fatal: make(chan error, 2), dispatchLoops: cfg.NoticeDispatchLoops}
	options := worker.Options{
		// In-flight activities get this long to finish when the worker
		// stops; what still runs then is cancelled, and Temporal retries
		// it on another worker (or on this one once restarted).
		WorkerStopTimeout: cfg.WorkerStopTimeout,
		// Polls follow the backlog: two fixed pollers (the SDK's default)
		// leave a rollout's thousands of first tasks waiting in matching.
		WorkflowTaskPollerBehavior: worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{}),
		ActivityTaskPollerBehavior: worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{}),
		OnFatalError: func(err error) {
			select {
			case set.fatal <- err:
			default: // one fatal error is enough to stop
			}
		},
	}

	// Process-wide, so set before the first worker: see WORKFLOW_CACHE_SIZE.
	worker.SetStickyWorkflowCacheSize(cfg.WorkflowCacheSize)
	updates := worker.New(c, cfg.TaskQueue, options)
	trusted := workflows.ServiceUpdates{Trusted: cfg.ActionTrustedKeys.Verifier}
	if trusted.Trusted == nil {
		logger.Warn("ACTION_TRUSTED_KEYS is empty: every Approve, Reschedule and SetAdmins is refused until it lists the keys of the starter and the portal")
	}
	if cfg.ActionSigningKey.Signer == nil {
		logger.Warn("ACTION_SIGNING_KEY is empty: this worker's rollouts cannot sign a Supersede or a Move, so instances held by an older optional update are reported held instead of moved to the new release, and a Resume cannot move a held wave")
	}
	updates.RegisterWorkflowWithOptions(trusted.ServiceUpdate, workflow.RegisterOptions{Name: workflows.WorkflowType})
	updates.RegisterWorkflowWithOptions(workflows.Rollout, workflow.RegisterOptions{Name: workflows.RolloutWorkflowType})
	st := store.New(pool)
	(&activities.StoreActivities{Store: st}).Register(updates)
	(&activities.RolloutActivities{
		Store: store.New(rolloutPool), Client: c, TaskQueue: cfg.TaskQueue, Concurrency: rolloutConcurrency, Signer: cfg.ActionSigningKey.Signer,
		StartRate: rate.NewLimiter(rate.Limit(cfg.RolloutStartRate), max(1, int(cfg.RolloutStartRate))),
	}).Register(updates)
	notifier, err := activities.NewNotifier(st, sendgrid.Config{
		Host:   cfg.SendGridHost,
		APIKey: cfg.SendGridAPIKey,
		From:   cfg.MailFrom,
	})
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	if cfg.PortalSecret != "" {
		signer, err := links.NewSigner(cfg.PortalSecret, time.Now)
		if err != nil {
			return nil, err
		}
		notifier.EnableActionLinks(activities.ActionLinks{Signer: signer, BaseURL: cfg.PortalBaseURL, Lifetime: cfg.PortalLinkLifetime})
	} else {
		logger.Info("Emails carry no action links: PORTAL_SECRET is empty")
	}
	notifier.Register(updates)
	if set.dispatcher, err = activities.NewDispatcher(st, notifier, logger, metrics); err != nil {
		return nil, err
	}

	// The store activities an admin waits for run on their own queue too.
	adminOptions := options
	adminOptions.DisableWorkflowWorker = true
	admin := worker.New(c, workflows.AdminTaskQueue, adminOptions)
	(&activities.StoreActivities{Store: st}).Register(admin)

	set.workers = []namedWorker{{taskQueue: cfg.TaskQueue, worker: updates}, {taskQueue: workflows.AdminTaskQueue, worker: admin}}

	if cfg.Executor == config.ExecutorNone {
		// No poller on the executor's queue: ApplyUpdate waits there for
		// the provider's own worker.
		logger.Info("No executor in this worker (EXECUTOR=none): updates run in a worker polling the executor task queue",
			"taskQueue", workflows.ExecutorTaskQueue)
		return set, nil
	}
	executor, err := activities.NewExecutor(activities.ExecutorOptions{Kind: cfg.Executor, Command: cfg.ExecutorArgv, Probe: cfg.ExecutorProbeArgv,
		Leases: st, KillGrace: cfg.ExecutorKillGrace, PassEnv: cfg.ExecutorPassEnv, Credential: cfg.ExecutorCredential, SimulatedDuration: cfg.SimulatedDuration, SimulatedFailures: cfg.SimulatedFailures})
	if err != nil {
		return nil, err
	}
	if command, ok := executor.(*activities.CommandExecutor); ok {
		// Before polling: what a crashed predecessor on this host left
		// running must not run beside the retries this worker may get.
		if err := command.ReapOrphans(ctx, log.NewStructuredLogger(logger)); err != nil {
			return nil, err
		}
	}
	executorOptions := options
	executorOptions.DisableWorkflowWorker = true // the executor queue carries activities only
	// An update cut short by a rolling deploy is retried, from the start,
	// only if its window leaves time; so a stopping worker lets running
	// updates finish for far longer than the quick store and notice
	// activities.
	executorOptions.WorkerStopTimeout = cfg.ExecutorStopTimeout
	executorWorker := worker.New(c, workflows.ExecutorTaskQueue, executorOptions)
	activities.RegisterExecutor(executorWorker, executor)
	set.workers = append(set.workers, namedWorker{taskQueue: workflows.ExecutorTaskQueue, worker: executorWorker})
	return set, nil
}

// serve starts the workers and stops them when ctx is cancelled (nil) or
// when one fails on its own, the namespace deleted say (that error).
func serve(ctx context.Context, set *workerSet, health *health, logger *slog.Logger) error {
	started := make([]namedWorker, 0, len(set.workers))
	defer func() {
		health.polled(false)
		stopWorkers(started, logger)
	}()
	for _, w := range set.workers {
		if err := w.worker.Start(); err != nil {
			return fmt.Errorf("starting the worker on task queue %s: %w", w.taskQueue, err)
		}
		started = append(started, w)
		logger.Info("Worker polling", "taskQueue", w.taskQueue)
	}
	health.polled(true)
	dispatchCtx, stopDispatch := context.WithCancel(ctx)
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		set.dispatcher.Run(dispatchCtx, set.dispatchLoops)
	}()
	defer func() { stopDispatch(); <-dispatched }()
	logger.Info("Notice dispatcher running", "loops", set.dispatchLoops)
	select {
	case <-ctx.Done():
		logger.Info("Stopping: in-flight activities may finish, the rest will be retried")
		return nil
	case err := <-set.fatal:
		return fmt.Errorf("worker failed: %w", err)
	}
}

// stopWorkers stops every worker at once, so the stop timeouts are waited
// out side by side: the longest of them, not their sum.
func stopWorkers(workers []namedWorker, logger *slog.Logger) {
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			w.worker.Stop()
			logger.Info("Worker stopped", "taskQueue", w.taskQueue)
		})
	}
	wg.Wait()
}
