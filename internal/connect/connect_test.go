package connect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

var testTarget = Target{Name: "postgres", Description: "Postgres at db:5432/svc"}

// errNotUp is what a server that is not up yet answers.
var errNotUp = errors.New("connection refused")

func TestWaitRetriesUntilTheServerAnswers(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var waited []int
	w := Waiter{
		Timeout:  time.Minute,
		Interval: time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		Waiting:  func(_ Target, n int, _ error) { waited = append(waited, n) },
	}
	attempts := 0
	err := w.Wait(context.Background(), testTarget, func(context.Context) error {
		if attempts++; attempts < 3 {
			return errNotUp
		}
		return nil
	})
	if err != nil || attempts != 3 {
		t.Fatalf("Wait = %v after %d attempts, want success at the third", err, attempts)
	}
	if len(waited) != 2 || waited[0] != 1 || waited[1] != 2 {
		t.Errorf("Waiting heard of attempts %v, want [1 2]", waited)
	}
	for _, want := range []string{
		`level=WARN msg="Waiting to connect" target=postgres server="Postgres at db:5432/svc" error="connection refused" attempt=1`,
		`level=INFO msg=Connected target=postgres server="Postgres at db:5432/svc" attempts=3`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestWaitEndsAtOnceOnAPermanentError(t *testing.T) {
	t.Parallel()
	refused := fmt.Errorf("connect to Postgres: %w", &pgconn.PgError{Code: "28P01", Message: "password authentication failed"})
	if !PostgresAnswered(refused) || PostgresAnswered(errNotUp) {
		t.Fatalf("PostgresAnswered tells a server's answer from a server not up: %t, %t", PostgresAnswered(refused), PostgresAnswered(errNotUp))
	}
	attempts := 0
	err := Waiter{Timeout: time.Minute, Interval: time.Millisecond}.Wait(context.Background(), testTarget, func(context.Context) error {
		attempts++
		return Permanent(refused)
	})
	if err != refused || attempts != 1 {
		t.Errorf("Wait = %v after %d attempts, want the server's answer after one", err, attempts)
	}
}

func TestWaitGivesUpWithTheLastAnswer(t *testing.T) {
	t.Parallel()
	started := time.Now()
	var attempts atomic.Int32
	// The attempt the timeout cuts short says less than the one before.
	err := Waiter{Timeout: 300 * time.Millisecond, Interval: 100 * time.Millisecond}.Wait(context.Background(), testTarget, func(ctx context.Context) error {
		if attempts.Add(1) < 3 {
			return errNotUp
		}
		<-ctx.Done()
		return ctx.Err()
	})
	var timeout *TimeoutError
	if !errors.As(err, &timeout) || !errors.Is(err, errNotUp) {
		t.Fatalf("Wait = %v, want a *TimeoutError carrying %v", err, errNotUp)
	}
	if want := "Postgres at db:5432/svc not ready within 300ms (CONNECT_TIMEOUT): connection refused"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if took := time.Since(started); took < 300*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", took)
	}
}

func TestWaitRetriesAnAttemptThatTimesOut(t *testing.T) {
	t.Parallel()
	attempts := 0
	err := Waiter{Timeout: time.Minute, Interval: time.Millisecond, AttemptTimeout: 20 * time.Millisecond}.Wait(context.Background(), testTarget,
		func(ctx context.Context) error {
			if attempts++; attempts == 1 {
				<-ctx.Done() // a server that accepts connections but does not answer
				return ctx.Err()
			}
			return nil
		})
	if err != nil || attempts != 2 {
		t.Errorf("Wait = %v after %d attempts, want success at the second", err, attempts)
	}
}

func TestWaitStopsWithItsContext(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	w := Waiter{Timeout: time.Minute, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	err := w.Wait(ctx, testTarget, func(context.Context) error {
		cancel()
		return errNotUp
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v, want context.Canceled", err)
	}
	if !strings.Contains(logs.String(), `msg="Stopped while waiting to connect" target=postgres`) {
		t.Errorf("log does not say the wait stopped:\n%s", logs.String())
	}
}

func TestPoolConfig(t *testing.T) {
	t.Parallel()
	const defaultMaxConns = 32
	for _, tt := range []struct {
		name        string
		databaseURL string
		want        int32
	}{
		{"URL without a pool size", "postgres://svc:secret@db:5432/svc?sslmode=disable", defaultMaxConns},
		{"URL with a pool size", "postgres://svc:secret@db:5432/svc?sslmode=disable&pool_max_conns=5", 5},
		{"URL asking for more", "postgres://db/svc?pool_max_conns=200", 200},
		{"keyword form without a pool size", "host=db dbname=svc", defaultMaxConns},
		{"keyword form with a pool size", "host=db dbname=svc pool_max_conns=7", 7},
	} {
		poolConfig, err := PoolConfig(tt.databaseURL, defaultMaxConns)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if poolConfig.MaxConns != tt.want {
			t.Errorf("%s: MaxConns %d, want %d", tt.name, poolConfig.MaxConns, tt.want)
		}
		if _, left := poolConfig.ConnConfig.RuntimeParams["pool_max_conns"]; left {
			t.Errorf("%s: pool_max_conns would be sent to Postgres as a parameter", tt.name)
		}
	}
	if _, err := PoolConfig("postgres://svc:hunter2@db/svc?pool_max_conns=none", defaultMaxConns); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a bad pool size: %v, want an error without the password", err)
	}
}

func TestPlaintextToRemote(t *testing.T) {
	for url, want := range map[string]bool{
		"postgres://u@127.0.0.1:5432/db?sslmode=disable":                          false,
		"postgres://u@localhost/db?sslmode=disable":                               false,
		"host=/var/run/postgresql dbname=db sslmode=disable":                      false,
		"postgres://u@db.internal:5432/db?sslmode=disable":                        true,
		"postgres://u@10.0.0.5/db?sslmode=disable":                                true,
		"postgres://u@db.internal:5432/db?sslmode=require":                        false,
		"postgres://u@db.internal:5432/db?sslmode=verify-full&sslrootcert=system": false,
	} {
		config, err := PoolConfig(url, 4)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if got := PlaintextToRemote(config); got != want {
			t.Errorf("PlaintextToRemote(%s) = %v, want %v", url, got, want)
		}
	}
}
