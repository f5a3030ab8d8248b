// Command worker runs svcupdate: the ServiceUpdate workflow with its store
// and notification activities on the main task queue, and the executor
// (ApplyUpdate) on its own queue. It is configured by environment variables
// only; `worker -h` lists them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
	_ "time/tzdata" // windows render in the instance's zone on hosts without a zone database

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/log"

	"github.com/svcupdate/svcupdate/activities"
	"github.com/svcupdate/svcupdate/internal/buildinfo"
	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/connect"
	"github.com/svcupdate/svcupdate/internal/deployment"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/tracing"
	"github.com/svcupdate/svcupdate/schemas"
	"github.com/svcupdate/svcupdate/workflows"
)

const program = "worker"

const (
	// defaultPoolMaxConns is the Postgres pool size when DATABASE_URL has no
	// pool_max_conns. pgxpool's own default, max(4, NumCPU), would queue
	// the many activities a worker runs at once behind a handful of
	// connections, and SendNotice holds one for the whole SendGrid call.
	// Three workers of 32 still fit in Postgres's default max_connections
	// of 100, with room for the starter and psql.
	defaultPoolMaxConns = 32
	// rolloutPoolMaxConns is the most of the pool that the Rollout's batches
	// take for themselves (a quarter at most): their transactions are short.
	rolloutPoolMaxConns = 8
	// connectRetryInterval is the pause between attempts to reach Temporal
	// or Postgres while they are not up yet.
	connectRetryInterval = 2 * time.Second
	// connectAttemptTimeout bounds one attempt, so a server that accepts
	// connections but does not answer is retried like one that is down.
	connectAttemptTimeout = 5 * time.Second
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
	os.Exit(cli.ExitCode(program, err, os.Stderr))
}

// run is the whole worker: it returns nil after a graceful stop (ctx
// cancelled by SIGINT or SIGTERM), or the error that stopped it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := parseArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return &cli.UsageError{Err: err}
	}

	// Before any program starts: the update command must not read the
	// worker's /proc (its environment holds the credentials).
	if err := activities.HideWorkerFromPrograms(); err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	logger.Info("Starting svcupdate worker", "version", buildinfo.Read(), "config", cfg)
	if len(cfg.PayloadKeys) == 0 {
		logger.Warn("Payloads are stored in Temporal in clear text, admin e-mail addresses among them; set PAYLOAD_KEYS in production")
	}
	if cfg.Executor == config.ExecutorSimulated {
		logger.Warn("Updates are simulated: ApplyUpdate reports success without updating anything; set EXECUTOR=command or none in production",
			"executor", cfg.Executor, "taskQueue", workflows.ExecutorTaskQueue)
	}

	health := newHealth()
	metrics, err := startMetrics(cfg.MetricsAddr, health, logger)
	if err != nil {
		return err
	}
	defer metrics.close(logger)

	waiter := connect.Waiter{Timeout: cfg.ConnectTimeout, Interval: connectRetryInterval, AttemptTimeout: connectAttemptTimeout, Logger: logger}
	poolConfig, err := connect.PoolConfig(cfg.DatabaseURL, defaultPoolMaxConns)
	if err != nil {
		return err
	}
	if connect.PlaintextToRemote(poolConfig) {
		logger.Warn("DATABASE_URL reaches a remote Postgres without TLS; use sslmode=verify-full with sslrootcert in production",
			"host", poolConfig.ConnConfig.Host)
	}
	// The Rollout's batches book on a share of the pool of their own: the
	// notices of the updates they start hold a connection for each whole
	// SendGrid call, and the starts must not queue behind them.
	rolloutPoolConfig := poolConfig.Copy()
	rolloutPoolConfig.MaxConns = max(1, min(rolloutPoolMaxConns, poolConfig.MaxConns/4))
	poolConfig.MaxConns -= rolloutPoolConfig.MaxConns
	pool, err := waiter.Postgres(ctx, poolConfig, schemas.Current)
	if err != nil {
		return stoppedIsNil(ctx, err)
	}
	defer pool.Close()
	rolloutPool, err := pgxpool.NewWithConfig(ctx, rolloutPoolConfig)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer rolloutPool.Close()
	health.pool.Store(pool)
	health.setStage("connecting to Temporal")

	clientOptions, err := cfg.ClientOptions()
	if err != nil {
		return err
	}
	clientOptions.Logger, clientOptions.MetricsHandler = log.NewStructuredLogger(logger), metrics.handler
	traces, err := tracing.Start(ctx, program)
	if err != nil {
		return err
	}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), scrapeShutdownTimeout)
		defer cancel()
		if err := traces.Shutdown(shutdownCtx); err != nil {
			logger.Warn("Traces not all exported", "error", err)
		}
	}()
	if traces != nil {
		clientOptions.Interceptors = append(clientOptions.Interceptors, traces.Interceptor)
		logger.Info("Tracing through OpenTelemetry (OTEL_EXPORTER_OTLP_*)")
	}
	temporalClient, err := waiter.Temporal(ctx, clientOptions)
	if err != nil {
		return stoppedIsNil(ctx, err)
	}
	defer temporalClient.Close()
	if err := deployment.Check(ctx, temporalClient, cfg.TemporalNamespace, store.New(pool)); errors.Is(err, deployment.ErrUnbound) {
		logger.Warn("Cannot tell whether the database belongs to this namespace's deployment", "reason", err)
	} else if err != nil {
		return stoppedIsNil(ctx, err)
	}
	health.temporal.Store(&temporalClient)
	health.setStage("starting the workers")

	codecServer, err := startCodecServer(cfg, logger)
	if err != nil {
		return err
	}
	defer codecServer.close(logger)

	workers, err := newWorkers(ctx, temporalClient, pool, rolloutPool, cfg, logger, metrics.handler)
	if err != nil {
		return err
	}
	return serve(ctx, workers, health, logger)
}

// stoppedIsNil returns nil when err is the worker being stopped while it
// waited for a server: a graceful stop, not a failure.
func stoppedIsNil(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
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
