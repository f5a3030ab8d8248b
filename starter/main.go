// Command starter is the CLI of operators and instance admins: it migrates
// the schema, registers the search attributes, loads the fleet, rolls a
// release out, approves, reschedules, inspects, lists and cancels updates,
// and runs the demo behind `make run`.
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

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	temporallog "go.temporal.io/sdk/log"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/connect"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	if err != nil && interrupted {
		fmt.Fprintln(os.Stderr, "starter: interrupted")
		os.Exit(130)
	}
	os.Exit(cli.ExitCode("starter", err, os.Stderr))
}

// env holds what subcommands share: the configuration, the output and the
// connections, opened on first use and closed when the subcommand ends.
type env struct {
	cfg            config.Config
	stdout, stderr io.Writer

	temporalClient client.Client
	pool           *pgxpool.Pool
}

// temporal returns the Temporal client, dialling on first use.
func (e *env) temporal(ctx context.Context) (client.Client, error) {
	if e.temporalClient != nil {
		return e.temporalClient, nil
	}
	c, err := client.DialContext(ctx, e.clientOptions())
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (TEMPORAL_ADDRESS): %w", e.cfg.TemporalAddress, err)
	}
	e.temporalClient = c
	return c, nil
}

func (e *env) clientOptions() client.Options {
	// The SDK logs connection chatter at info; an operator only needs warnings.
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Load validated the keys, so the codec builds.
	options, _ := e.cfg.ClientOptions()
	options.Logger = temporallog.NewStructuredLogger(logger)
	options.Identity = "starter@" + hostname()
	return options
}

// temporalWhenUp is temporal, but waits up to CONNECT_TIMEOUT for a server
// that is still starting (deployments start the setup beside the server).
func (e *env) temporalWhenUp(ctx context.Context) (client.Client, error) {
	var c client.Client
	err := e.waitFor(ctx, "Temporal at "+e.cfg.TemporalAddress, func(ctx context.Context) (err error) {
		c, err = e.temporal(ctx)
		return err
	})
	return c, err
}

// waitFor retries attempt until it succeeds or CONNECT_TIMEOUT passes,
// saying once on stderr what it waits for.
func (e *env) waitFor(ctx context.Context, what string, attempt func(context.Context) error) error {
	waiter := connect.Waiter{
		Timeout:  e.cfg.ConnectTimeout,
		Interval: time.Second,
		Waiting: func(_ connect.Target, n int, err error) {
			if n == 1 {
				fmt.Fprintf(e.stderr, "waiting up to %s (CONNECT_TIMEOUT) for %s: %v\n", e.cfg.ConnectTimeout, what, err)
			}
		},
	}
	err := waiter.Wait(ctx, connect.Target{Description: what}, attempt)
	var timeout *connect.TimeoutError
	if errors.As(err, &timeout) {
		// The CLI keeps its words: it waits for a server to answer, the
		// worker for one to be ready (its schema migrated, say).
		return fmt.Errorf("%s did not answer within %s (CONNECT_TIMEOUT): %w", what, timeout.Timeout, timeout.Err)
	}
	return err
}

// postgres returns the pool on DATABASE_URL, connecting on first use.
func (e *env) postgres(ctx context.Context) (*pgxpool.Pool, error) {
	if e.pool != nil {
		return e.pool, nil
	}
	pool, err := pgxpool.New(ctx, e.cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		err = fmt.Errorf("connect to Postgres (DATABASE_URL): %w", err)
		if connect.PostgresAnswered(err) {
			return nil, connect.Permanent(err)
		}
		return nil, err
	}
	e.pool = pool
	return pool, nil
}

func (e *env) close() {
	if e.temporalClient != nil {
		e.temporalClient.Close()
	}
	if e.pool != nil {
		e.pool.Close()
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
