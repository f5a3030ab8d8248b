// Command worker runs svcupdate: the ServiceUpdate workflow with its store
// and notification activities on the main task queue, and the executor
// (ApplyUpdate) on its own queue. It is configured by environment variables
// only; `worker -h` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
	_ "time/tzdata" // windows render in the instance's zone on hosts without a zone database

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/activities/sendgrid"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/schemas"
	"github.com/svcupdate/svcupdate/workflows"
)

const program = "worker"

const (
	// defaultPoolMaxConns is the Postgres pool size when DATABASE_URL has no
	// pool_max_conns. pgxpool's own default, max(4, NumCPU), would queue
	// the many activities a worker runs at once (a wave of notices during a
	// rollout, bookings at a popular slot) behind a handful of connections,
	// and SendNotice holds one for the whole SendGrid call. 32 keeps that
	// queue short while three workers still fit in Postgres's default
	// max_connections of 100, with room for the starter and psql.
	defaultPoolMaxConns = 32
	// connectRetryInterval is the pause between attempts to reach Temporal
	// or Postgres while they are not up yet.
	connectRetryInterval = 2 * time.Second
	// connectAttemptTimeout bounds one attempt, so a server that accepts
	// connections but does not answer is retried like one that is down.
	connectAttemptTimeout = 5 * time.Second
	// metricsShutdownTimeout bounds the last scrapes at exit.
	metricsShutdownTimeout = 5 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops the worker gracefully; restoring the
		// default lets a second one end the process at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a bad flag, argument or configuration value: the program
// prints its one-line message and exits 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitCode reports err on stderr and returns the process exit code:
// 0 for success and -h, 2 for a usage or configuration error, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var usage *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 1
	}
}

// run is the whole worker: it returns nil after a graceful stop (ctx
// cancelled by SIGINT or SIGTERM), or the error that stopped it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The flag package's own messages are silenced: -h prints the usage
	// below, and a bad flag is reported once, by exitCode.
	flags := flag.NewFlagSet(program, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	flags.Usage = func() {}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "%s runs the svcupdate workflow, its activities and the update executor.\n\n", program)
			if err := config.PrintUsage(stdout, program); err != nil {
				return err
			}
			return flag.ErrHelp
		}
		return &usageError{fmt.Errorf("%w (the worker takes -h only; see -h)", err)}
	}
	if flags.NArg() > 0 {
		return &usageError{fmt.Errorf("unexpected argument %q: the worker takes its configuration from the environment (see -h)", flags.Arg(0))}
	}
	cfg, err := config.Load()
	if err != nil {
		return &usageError{err}
	}

	logger := newLogger(cfg, stderr)
	logger.Info("Starting svcupdate worker", "config", cfg)
	if cfg.Executor == config.ExecutorSimulated {
		logger.Warn("Updates are simulated: ApplyUpdate reports success without updating anything; set EXECUTOR=command or none in production",
			"executor", cfg.Executor, "taskQueue", workflows.ExecutorTaskQueue)
	}

	metrics, err := startMetrics(cfg.MetricsAddr, logger)
	if err != nil {
		return err
	}
	defer metrics.close(logger)

	pool, err := connectPostgres(ctx, cfg, logger)
	if err != nil || pool == nil {
		return err
	}
	defer pool.Close()

	temporalClient, err := connectTemporal(ctx, cfg, logger, metrics.handler)
	if err != nil || temporalClient == nil {
		return err
	}
	defer temporalClient.Close()

	workers, err := newWorkers(temporalClient, pool, cfg, logger)
	if err != nil {
		return err
	}
	return serve(ctx, workers, logger)
}

// newLogger is the program's slog logger, also handed to the Temporal SDK.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	options := &slog.HandlerOptions{Level: cfg.LogLevel}
	var handler slog.Handler = slog.NewTextHandler(w, options)
	if cfg.LogFormat == config.LogFormatJSON {
		handler = slog.NewJSONHandler(w, options)
	}
	logger := slog.New(handler)
	slog.SetDefault(logger)
	return logger
}

// workerMetrics serves the SDK's metrics and svcupdate's own (recorded
// through activity.GetMetricsHandler) on one Prometheus endpoint.
type workerMetrics struct {
	handler client.MetricsHandler
	scope   io.Closer
	server  *http.Server
}

// startMetrics listens on addr and serves /metrics; an empty addr keeps
// metrics off (a no-op handler).
func startMetrics(addr string, logger *slog.Logger) (*workerMetrics, error) {
	if addr == "" {
		logger.Info("Metrics endpoint disabled (METRICS_ADDR is empty)")
		return &workerMetrics{handler: client.MetricsNopHandler}, nil
	}
	registry := prom.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer:       registry,
		DefaultTimerType: tallyprom.HistogramTimerType,
		// From 1 ms (SDK requests) to about 18 h (the longest update
		// windows), four times wider each.
		DefaultHistogramBuckets: prom.ExponentialBuckets(0.001, 4, 14),
		OnRegisterError: func(err error) {
			logger.Error("Metric not registered with Prometheus", "error", err)
		},
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)

	listener, err := net.Listen("tcp", addr)
	if err != nil {
		_ = closer.Close()
		return nil, fmt.Errorf("metrics endpoint METRICS_ADDR=%s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", reporter.HTTPHandler())
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("Metrics endpoint stopped", "error", err)
		}
	}()
	logger.Info("Serving Prometheus metrics", "address", "http://"+listener.Addr().String()+"/metrics")
	return &workerMetrics{
		handler: sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)),
		scope:   closer,
		server:  server,
	}, nil
}

func (m *workerMetrics) close(logger *slog.Logger) {
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
		defer cancel()
		if err := m.server.Shutdown(ctx); err != nil {
			logger.Warn("Metrics endpoint did not stop cleanly", "error", err)
		}
	}
	if m.scope != nil {
		_ = m.scope.Close()
	}
}

// connectPostgres opens the pool and waits until Postgres answers. A nil
// pool and nil error mean ctx was cancelled while waiting.
func connectPostgres(ctx context.Context, cfg config.Config, logger *slog.Logger) (*pgxpool.Pool, error) {
	poolConfig, err := postgresPoolConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	what := "Postgres at " + redactedDatabase(pool)
	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return err
		}
		return schemaCurrent(ctx, pool)
	}
	if err := waitUntilUp(ctx, logger, what, cfg.ConnectTimeout, ready); err != nil || ctx.Err() != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// postgresPoolConfig reads DATABASE_URL and sizes the pool: as its
// pool_max_conns says when it has one, defaultPoolMaxConns otherwise.
func postgresPoolConfig(databaseURL string) (*pgxpool.Config, error) {
	poolConfig, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's message quotes the URL, password and all.
		return nil, errors.New("DATABASE_URL is not a Postgres connection URL")
	}
	// pgxpool consumes pool_max_conns while parsing, so whether it was given
	// is read from the connection settings, where it is an unknown parameter.
	connConfig, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return nil, errors.New("DATABASE_URL is not a Postgres connection URL")
	}
	if _, given := connConfig.RuntimeParams["pool_max_conns"]; !given {
		poolConfig.MaxConns = defaultPoolMaxConns
	}
	return poolConfig, nil
}

// schemaCurrent fails while migrations are pending, so a worker deployed
// before `starter migrate` ran waits for it instead of failing activities.
// It only reads: creating goose's version table is the migration's job.
func schemaCurrent(ctx context.Context, pool *pgxpool.Pool) error {
	want, err := schemaVersion()
	if err != nil {
		return err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", goose.DefaultTablename).Scan(&exists); err != nil {
		return fmt.Errorf("looking for the schema version table: %w", err)
	}
	var have int64
	if exists {
		query := "SELECT COALESCE(MAX(version_id), 0) FROM " + pgx.Identifier{goose.DefaultTablename}.Sanitize() + " WHERE is_applied"
		if err := pool.QueryRow(ctx, query).Scan(&have); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
	}
	if have < want {
		return fmt.Errorf("the svcupdate schema is at version %d, this worker needs %d (run `starter migrate`)", have, want)
	}
	return nil
}

// schemaVersion is the highest migration embedded in this binary.
func schemaVersion() (int64, error) {
	entries, err := fs.ReadDir(schemas.FS, ".")
	if err != nil {
		return 0, fmt.Errorf("reading the embedded migrations: %w", err)
	}
	var highest int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("embedded migration %s: %w", e.Name(), err)
		}
		highest = max(highest, v)
	}
	return highest, nil
}

// redactedDatabase names the database without credentials.
func redactedDatabase(pool *pgxpool.Pool) string {
	c := pool.Config().ConnConfig
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// connectTemporal dials Temporal and waits until it answers. A nil client
// and nil error mean ctx was cancelled while waiting.
func connectTemporal(ctx context.Context, cfg config.Config, logger *slog.Logger, metrics client.MetricsHandler) (client.Client, error) {
	options := client.Options{
		HostPort:       cfg.TemporalAddress,
		Namespace:      cfg.TemporalNamespace,
		Logger:         log.NewStructuredLogger(logger),
		MetricsHandler: metrics,
	}
	var c client.Client
	what := fmt.Sprintf("Temporal at %s (namespace %s)", cfg.TemporalAddress, cfg.TemporalNamespace)
	err := waitUntilUp(ctx, logger, what, cfg.ConnectTimeout, func(ctx context.Context) error {
		dialed, err := client.DialContext(ctx, options)
		if err != nil {
			return err
		}
		c = dialed
		return nil
	})
	if err != nil || ctx.Err() != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	return c, nil
}

// waitUntilUp calls connect until it succeeds, saying every few seconds
// what it waits for, and gives up after timeout. It returns nil without
// success when ctx is cancelled: the operator asked the worker to stop.
func waitUntilUp(ctx context.Context, logger *slog.Logger, what string, timeout time.Duration, connect func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for attempt := 1; ; attempt++ {
		// Each attempt gets its full time even near the deadline, so the
		// error reported at the end is the server's, not a cut-short one.
		attemptCtx, cancel := context.WithTimeout(ctx, connectAttemptTimeout)
		err := connect(attemptCtx)
		cancel()
		if err == nil {
			logger.Info("Connected to "+what, "attempts", attempt)
			return nil
		}
		if ctx.Err() != nil {
			logger.Info("Stopped while waiting for " + what)
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%s not ready within %s (CONNECT_TIMEOUT): %w", what, timeout, err)
		}
		logger.Warn("Waiting for "+what, "error", err, "attempt", attempt, "retryIn", connectRetryInterval, "giveUpIn", left.Round(time.Second))
		pause := time.NewTimer(min(connectRetryInterval, left))
		select {
		case <-ctx.Done():
			pause.Stop()
			logger.Info("Stopped while waiting for " + what)
			return nil
		case <-pause.C:
		}
	}
}

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
}

// newWorkers builds the workers: the workflow with the store and
// notification activities on cfg.TaskQueue, and, unless EXECUTOR=none, the
// executor on its own queue so a provider can run it elsewhere.
func newWorkers(c client.Client, pool *pgxpool.Pool, cfg config.Config, logger *slog.Logger) (*workerSet, error) {
	set := &workerSet{fatal: make(chan error, 2)}
	options := worker.Options{
		// In-flight activities get this long to finish when the worker
		// stops; what still runs then is cancelled, and Temporal retries
		// it on another worker (or on this one once restarted).
		WorkerStopTimeout: cfg.WorkerStopTimeout,
		OnFatalError: func(err error) {
			select {
			case set.fatal <- err:
			default: // one fatal error is enough to stop
			}
		},
	}

	updates := worker.New(c, cfg.TaskQueue, options)
	updates.RegisterWorkflowWithOptions(workflows.ServiceUpdate, workflow.RegisterOptions{Name: workflows.WorkflowType})
	(&activities.RecordActivities{Store: activities.NewStore(pool)}).Register(updates)
	notifier, err := activities.NewNotifier(pool, sendgrid.Config{
		Host:   cfg.SendGridHost,
		APIKey: cfg.SendGridAPIKey,
		From:   cfg.MailFrom,
	})
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	notifier.Register(updates)

	set.workers = []namedWorker{{taskQueue: cfg.TaskQueue, worker: updates}}

	if cfg.Executor == config.ExecutorNone {
		// No poller on the executor's queue: ApplyUpdate waits there for
		// the provider's own worker.
		logger.Info("No executor in this worker (EXECUTOR=none): updates run in a worker polling the executor task queue",
			"taskQueue", workflows.ExecutorTaskQueue)
		return set, nil
	}
	executor, err := activities.NewExecutor(activities.ExecutorOptions{Kind: cfg.Executor, Command: cfg.ExecutorArgv,
		KillGrace: cfg.ExecutorKillGrace, SimulatedDuration: cfg.SimulatedDuration, SimulatedFailures: cfg.SimulatedFailures})
	if err != nil {
		return nil, err
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
func serve(ctx context.Context, set *workerSet, logger *slog.Logger) error {
	started := make([]namedWorker, 0, len(set.workers))
	defer func() { stopWorkers(started, logger) }()
	for _, w := range set.workers {
		if err := w.worker.Start(); err != nil {
			return fmt.Errorf("starting the worker on task queue %s: %w", w.taskQueue, err)
		}
		started = append(started, w)
		logger.Info("Worker polling", "taskQueue", w.taskQueue)
	}
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
