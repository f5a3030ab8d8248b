// Package connect waits for the servers both programs need, Temporal and
// Postgres. They often start together (docker compose, a Kubernetes pod),
// so a server that is not up yet is tried again until CONNECT_TIMEOUT,
// while an answer that waiting will not change, a wrong password say, ends
// the wait at once when the caller marks it Permanent.
package connect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// Target is a server waited for.
type Target struct {
	// Name is the target key of log lines: "temporal", "postgres".
	Name string
	// Description names the server in messages, without credentials:
	// "Temporal at localhost:7233 (namespace default)".
	Description string
}

// Waiter tries to reach a server until it answers.
type Waiter struct {
	// Timeout bounds the whole wait (CONNECT_TIMEOUT).
	Timeout time.Duration
	// Interval is the pause between attempts.
	Interval time.Duration
	// AttemptTimeout bounds one attempt, so a server that accepts
	// connections but does not answer is tried again like one that is
	// down; zero leaves an attempt bounded by Timeout alone.
	AttemptTimeout time.Duration
	// Logger, when set, logs every failed attempt, the connection and a
	// stop while waiting.
	Logger *slog.Logger
	// Waiting, when set, hears of every failed attempt before the pause.
	Waiting func(target Target, attempt int, err error)
}

// TimeoutError ends a wait that ran out of time.
type TimeoutError struct {
	Target  Target
	Timeout time.Duration
	// Err is the last attempt's error, or the one before it when the
	// timeout cut the last attempt short: that says more.
	Err error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s not ready within %s (CONNECT_TIMEOUT): %v", e.Target.Description, e.Timeout, e.Err)
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// permanentError ends a wait at once: the server answered and said no.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err, returned by an attempt, as one that waiting will
// not change: Wait returns it at once.
func Permanent(err error) error { return &permanentError{err} }

// PostgresAnswered reports whether err came from a running Postgres server
// (wrong password, no such database) rather than from reaching it.
func PostgresAnswered(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// Wait calls attempt until it succeeds. It returns early with the error of
// an attempt marked Permanent, with ctx's error when ctx ends (the caller
// was asked to stop), and with a *TimeoutError once Timeout has passed.
func (w Waiter) Wait(ctx context.Context, target Target, attempt func(context.Context) error) error {
	waitCtx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	deadline, _ := waitCtx.Deadline()
	timedOut := func(last error) error { return &TimeoutError{Target: target, Timeout: w.Timeout, Err: last} }
	stopped := func() error {
		w.log(slog.LevelInfo, "Stopped while waiting to connect", target)
		return ctx.Err()
	}
	var last error
	for n := 1; ; n++ {
		// An attempt that may run into the deadline is cut short by it, and
		// a gRPC call may end with a deadline error a moment before it.
		boundedByDeadline := w.AttemptTimeout <= 0 || time.Until(deadline) <= w.AttemptTimeout
		err := w.try(waitCtx, attempt)
		if err == nil {
			w.log(slog.LevelInfo, "Connected", target, "attempts", n)
			return nil
		}
		if ctx.Err() != nil {
			return stopped()
		}
		if waitCtx.Err() != nil || (boundedByDeadline && isDeadline(err)) {
			return timedOut(cmp.Or(last, err))
		}
		var permanent *permanentError
		if errors.As(err, &permanent) {
			return permanent.err
		}
		last = err
		if w.Waiting != nil {
			w.Waiting(target, n, err)
		}
		w.log(slog.LevelWarn, "Waiting to connect", target, "error", err, "attempt", n,
			"retryIn", w.Interval, "giveUpIn", time.Until(deadline).Round(time.Second))
		pause := time.NewTimer(w.Interval)
		select {
		case <-waitCtx.Done():
			pause.Stop()
			if ctx.Err() != nil {
				return stopped()
			}
			return timedOut(last)
		case <-pause.C:
		}
	}
}

func (w Waiter) try(ctx context.Context, attempt func(context.Context) error) error {
	if w.AttemptTimeout <= 0 {
		return attempt(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, w.AttemptTimeout)
	defer cancel()
	return attempt(ctx)
}

func (w Waiter) log(level slog.Level, msg string, target Target, args ...any) {
	if w.Logger == nil {
		return
	}
	w.Logger.Log(context.Background(), level, msg, append([]any{"target", target.Name, "server", target.Description}, args...)...)
}

// isDeadline reports whether err is a deadline passing, in the context or
// in a gRPC call that inherited it (and may end a moment earlier).
func isDeadline(err error) bool {
	var rpcDeadline *serviceerror.DeadlineExceeded
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &rpcDeadline)
}

// Temporal dials Temporal with options until it answers.
func (w Waiter) Temporal(ctx context.Context, options client.Options) (client.Client, error) {
	target := Target{Name: "temporal", Description: fmt.Sprintf("Temporal at %s (namespace %s)", options.HostPort, options.Namespace)}
	var c client.Client
	err := w.Wait(ctx, target, func(ctx context.Context) (err error) {
		c, err = client.DialContext(ctx, options)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Postgres opens a pool with config and waits until Postgres answers and
// ready accepts the pool (the worker waits for the schema).
func (w Waiter) Postgres(ctx context.Context, config *pgxpool.Config, ready func(context.Context, *pgxpool.Pool) error) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	c := config.ConnConfig
	target := Target{Name: "postgres", Description: fmt.Sprintf("Postgres at %s:%d/%s", c.Host, c.Port, c.Database)}
	err = w.Wait(ctx, target, func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return err
		}
		return ready(ctx, pool)
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// PoolConfig reads databaseURL and sizes the pool as its pool_max_conns
// says, defaultMaxConns when it has none.
func PoolConfig(databaseURL string, defaultMaxConns int32) (*pgxpool.Config, error) {
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
		poolConfig.MaxConns = defaultMaxConns
	}
	return poolConfig, nil
}

// PlaintextToRemote reports whether config reaches Postgres on another
// host without TLS (sslmode=disable), where the password and every
// admin's address would cross the network in clear.
func PlaintextToRemote(config *pgxpool.Config) bool {
	c := config.ConnConfig
	if c.TLSConfig != nil || strings.HasPrefix(c.Host, "/") || c.Host == "localhost" {
		return false
	}
	ip := net.ParseIP(c.Host)
	return ip == nil || !ip.IsLoopback()
}
