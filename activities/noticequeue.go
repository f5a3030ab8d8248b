package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/store"
)

// Dispatcher delivers the notice queue of the lean lifecycle: the
// notices and reminders that CommitTransition queued, each once it is
// due. It runs beside the workers in every worker process; dispatchers
// claim rows with SKIP LOCKED and a lease, so any number of them share
// the queue and a row held by a dispatcher that died is taken up again
// when its lease ends. Each notice goes through the Notifier (recipients
// read now, outbox row, SendGrid), so a notice sent twice is mailed once.
// It keeps to SendGrid's rate limit: when an answer says no request
// remains (X-RateLimit-Remaining 0) or is a 429, it waits until
// X-RateLimit-Reset before the next; a failed send is retried with
// backoff, never past a day.
type Dispatcher struct {
	store    *store.Store
	notifier *Notifier
	logger   *slog.Logger
	metrics  client.MetricsHandler // nil: nothing counted
	now      func() time.Time
}

// dispatcherContext is what a notice sent from the queue logs and counts
// with, in place of an activity's logger and metrics handler.
type dispatcherContext struct {
	logger  *slog.Logger
	metrics client.MetricsHandler
}

type dispatcherKey struct{}

const (
	dispatchBatch = 20
	// dispatchLease hides a claimed batch from other dispatchers; it
	// outlasts a batch of sends (30 s bound each, usually milliseconds).
	dispatchLease = 5 * time.Minute
	dispatchPoll  = time.Second
	// A notice still failing a day after it was due is given up, as the
	// old path's SendNotice activity was (schedule-to-close 24 h).
	dispatchGiveUp       = 24 * time.Hour
	dispatchFirstBackoff = 5 * time.Second
	dispatchMaxBackoff   = 10 * time.Minute
	// settleTimeout bounds recording a send's outcome (in the outbox and
	// the queue) after the worker was told to stop: the send happened and
	// must be recorded.
	settleTimeout = 10 * time.Second
)

// NewDispatcher builds a dispatcher over the store and notifier; it
// counts svcupdate_notices_sent on metrics (nil: not counted).
func NewDispatcher(st *store.Store, notifier *Notifier, logger *slog.Logger, metrics client.MetricsHandler) (*Dispatcher, error) {
	if st == nil || notifier == nil || logger == nil {
		return nil, errors.New("dispatcher needs a store, a notifier and a logger")
	}
	return &Dispatcher{store: st, notifier: notifier, logger: logger, metrics: metrics, now: time.Now}, nil
}

// Run runs loops dispatch loops until ctx ends.
func (d *Dispatcher) Run(ctx context.Context, loops int) {
	var wg sync.WaitGroup
	for range loops {
		wg.Go(func() {
			for ctx.Err() == nil {
				claimed, err := d.DispatchDue(ctx)
				if err != nil && ctx.Err() == nil {
					d.logger.Warn("Notice queue not dispatched; trying again", "error", err)
				}
				if claimed == 0 || err != nil {
					sleep(ctx, dispatchPoll)
				}
			}
		})
	}
	wg.Wait()
}

// DispatchDue claims one batch of due notices and delivers each. It
// reports how many it claimed; an error means the queue could not be read
// or ctx ended (the rest of the batch returns when its lease ends).
func (d *Dispatcher) DispatchDue(ctx context.Context) (int, error) {
	claimed, err := d.store.ClaimNotices(ctx, d.now(), dispatchLease, dispatchBatch)
	if err != nil {
		return 0, err
	}
	for _, c := range claimed {
		if until := d.notifier.mailPausedUntil(); until.After(d.now()) {
			sleep(ctx, until.Sub(d.now()))
		}
		if err := ctx.Err(); err != nil {
			return len(claimed), err
		}
		d.deliver(ctx, c)
	}
	return len(claimed), nil
}

// deliver sends one notice and records how it went.
func (d *Dispatcher) deliver(ctx context.Context, c store.ClaimedNotice) {
	sendCtx := context.WithValue(ctx, dispatcherKey{}, dispatcherContext{logger: d.logger, metrics: d.metrics})
	_, sendErr := d.notifier.SendNotice(sendCtx, c.Notice)
	now := d.now()
	state, retryAt, why := nextStep(sendErr, c, now)
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var err error
	if state == store.NoticeQueued {
		err = d.store.RetryNotice(settle, c.ID, retryAt, why)
	} else {
		err = d.store.FinishNotice(settle, c.ID, state, why, now)
	}
	logger := d.logger.With("kind", c.Notice.Kind, "workflowId", c.Notice.WorkflowID, "attempt", c.Attempts)
	switch {
	case err != nil:
		logger.Warn("Notice outcome not recorded; it is taken up again when its lease ends", "error", err)
	case state == store.NoticeFailed:
		logger.Warn("Notice not delivered", "error", why)
	case state == store.NoticeQueued:
		logger.Info("Notice not sent yet; retrying", "retryAt", retryAt, "error", why)
	}
}

// nextStep decides what follows a send: sent, failed for good (a
// non-retryable error, or a day of retries), or queued again at retryAt:
// when SendGrid said (X-RateLimit-Reset), else after a backoff that
// doubles with each attempt.
func nextStep(sendErr error, c store.ClaimedNotice, now time.Time) (state string, retryAt time.Time, why string) {
	if sendErr == nil {
		return store.NoticeSent, time.Time{}, ""
	}
	why = failureMessage(sendErr)
	var appErr *temporal.ApplicationError
	isApp := errors.As(sendErr, &appErr)
	switch {
	case isApp && appErr.NonRetryable():
		return store.NoticeFailed, time.Time{}, why
	case now.Sub(c.DueAt) >= dispatchGiveUp:
		return store.NoticeFailed, time.Time{}, fmt.Sprintf("given up %s after it was due: %s", dispatchGiveUp, why)
	case isApp && appErr.NextRetryDelay() > 0:
		return store.NoticeQueued, now.Add(appErr.NextRetryDelay()), why
	}
	return store.NoticeQueued, now.Add(backoff(c.Attempts)), why
}

// backoff is the wait after the attempt-th failed attempt.
func backoff(attempt int) time.Duration {
	wait := dispatchFirstBackoff
	for i := 1; i < attempt && wait < dispatchMaxBackoff; i++ {
		wait *= 2
	}
	return min(wait, dispatchMaxBackoff)
}

// failureMessage is an error's own message, without the SDK's wrapping.
func failureMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
