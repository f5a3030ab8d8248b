package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.temporal.io/sdk/log"

	"github.com/svcupdate/svcupdate/internal/store"
)

const (
	// missedRenewals is how many renewal intervals a lease holder goes
	// without a renewal before it stops its program: the same margin as the
	// server's heartbeat timeout, three heartbeat intervals.
	missedRenewals = 3
	// releaseTimeout bounds giving a lease back as an attempt ends, on a
	// context of its own since the activity's may be cancelled. A release
	// that fails leaves the lease to expire at its kill deadline.
	releaseTimeout = 10 * time.Second
)

// thisWorker identifies this process as leases record their holders:
// host (with its PID namespace, inside which PIDs mean something), boot,
// PID and start time.
var thisWorker = sync.OnceValues(func() (store.WorkerProcess, error) {
	host, err := os.Hostname()
	if err != nil {
		return store.WorkerProcess{}, fmt.Errorf("reading the host name: %w", err)
	}
	if ns := pidNamespace(); ns != "" {
		host += " " + ns
	}
	boot, err := bootID()
	if err != nil {
		return store.WorkerProcess{}, err
	}
	me := store.WorkerProcess{Host: host, BootID: boot, PID: os.Getpid()}
	if boot != "" {
		if me.Started, err = processStarted(me.PID); err != nil {
			return store.WorkerProcess{}, fmt.Errorf("reading this worker's start time: %w", err)
		}
	}
	return me, nil
})

// holderDead reports whether a lease's holder is known to be dead: a
// worker of this host (and PID namespace) whose boot has ended or whose
// process no longer runs. Of a holder elsewhere nothing is known.
func holderDead(holder, me store.WorkerProcess) bool {
	if holder.Host != me.Host || me.BootID == "" {
		return false
	}
	if holder.BootID != me.BootID {
		return true
	}
	started, err := processStarted(holder.PID)
	if errors.Is(err, errProcessGone) {
		return true
	}
	return err == nil && started != holder.Started
}

// heldLease is an executor lease this attempt holds. It is renewed in the
// background until released; a program run under it must be stopped by
// stopBy() unless a renewal comes first, which keeps the promise the
// lease's kill deadline makes to whoever waits for it.
type heldLease struct {
	leases     *store.Store
	instanceID string
	fence      int64
	every      time.Duration // renewal interval
	timeout    time.Duration // the lease's timeout in Postgres
	logger     log.Logger

	mu        sync.Mutex
	renewedAt time.Time // when the last successful renewal (or the take) was sent

	lost chan struct{} // closed once Postgres says the lease is no longer ours
	quit chan struct{} // closed by release
	done chan struct{} // closed when the renewals have stopped
}

// leaseTimeout is the lease's timeout in Postgres: the holder stops its
// program once missedRenewals renewals have failed, which takes up to
// killGrace more, so the kill deadline is never earlier than the moment
// the program is gone.
func leaseTimeout(every, killGrace time.Duration) time.Duration {
	return missedRenewals*every + killGrace
}

func holdLease(leases *store.Store, lease store.Lease, takenAt time.Time, every, timeout time.Duration, logger log.Logger) *heldLease {
	l := &heldLease{
		leases: leases, instanceID: lease.InstanceID, fence: lease.Fence, every: every, timeout: timeout, logger: logger,
		renewedAt: takenAt, lost: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go l.renew()
	return l
}

// renew renews the lease every interval until release, or until Postgres
// says it was broken.
func (l *heldLease) renew() {
	defer close(l.done)
	ticker := time.NewTicker(l.every)
	defer ticker.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-ticker.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), l.every)
		err := l.leases.RenewLease(ctx, l.instanceID, l.fence, l.timeout)
		cancel()
		switch {
		case err == nil:
			l.mu.Lock()
			l.renewedAt = sent
			l.mu.Unlock()
		case errors.Is(err, store.ErrLeaseLost):
			l.logger.Error("Executor lease lost: another attempt broke it after its kill deadline", "instanceId", l.instanceID, "fence", l.fence, "error", err)
			close(l.lost)
			return
		default:
			l.logger.Warn("Executor lease not renewed; the program running under it is stopped if this goes on", "instanceId", l.instanceID,
				"fence", l.fence, "stopBy", l.stopBy(), "error", err)
		}
	}
}

// stopBy is when a program running under the lease must have been told to
// stop unless a renewal succeeds before: its kill grace later, the lease's
// kill deadline comes, measured from an earlier moment than Postgres's.
func (l *heldLease) stopBy() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewedAt.Add(missedRenewals * l.every)
}

// recordProcess records the process group now running under the lease.
func (l *heldLease) recordProcess(ctx context.Context, pgid int) error {
	started, err := processStarted(pgid)
	if err != nil {
		started = 0 // gone already, or not Linux: nothing for a restarted worker to check
	}
	return l.leases.RecordLeaseProcess(ctx, l.instanceID, l.fence, pgid, started)
}

// release stops the renewals and gives the lease back.
func (l *heldLease) release() {
	close(l.quit)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if _, err := l.leases.ReleaseLease(ctx, l.instanceID, l.fence); err != nil {
		l.logger.Warn("Executor lease not released; it expires at its kill deadline", "instanceId", l.instanceID, "fence", l.fence, "error", err)
	}
}

// takeLease takes the instance's executor lease for attempt a, waiting,
// heartbeating, while another holder's kill deadline is ahead: at most
// one update command runs per instance. A holder that was a worker of this
// host and is dead is not waited for: what it left running is killed and
// its lease cleared. Waiting ends with the window.
func (e *CommandExecutor) takeLease(ctx context.Context, a *attempt) (*heldLease, error) {
	me, err := thisWorker()
	if err != nil {
		return nil, err
	}
	claim := store.LeaseClaim{InstanceID: a.in.InstanceID, Holder: a.holder(me), Worker: me, Timeout: leaseTimeout(a.every, e.KillGrace)}
	windowEnd := time.NewTimer(time.Until(a.in.WindowEnd))
	defer windowEnd.Stop()
	var waitingFor int64
	for {
		sent := time.Now()
		taken, err := e.Leases.TakeLease(ctx, claim)
		if err != nil {
			return nil, fmt.Errorf("could not take the executor lease of instance %s: %w", a.in.InstanceID, err)
		}
		if taken.Taken {
			if b := taken.Broken; b != nil {
				a.logger.Warn("Broke an expired executor lease: its holder stopped renewing it and its kill deadline has passed",
					"instanceId", a.in.InstanceID, "brokenFence", b.Fence, "brokenHolder", b.Holder, "killDeadline", b.KillDeadline)
			}
			a.logger.Info("Executor lease taken", "instanceId", a.in.InstanceID, "fence", taken.Lease.Fence)
			return holdLease(e.Leases, taken.Lease, sent, a.every, claim.Timeout, a.logger), nil
		}
		holder := taken.Lease
		if holderDead(holder.Worker, me) {
			if err := reapLease(ctx, e.Leases, holder, me, a.logger); err != nil {
				return nil, err
			}
			continue
		}
		if holder.Fence != waitingFor {
			waitingFor = holder.Fence
			a.logger.Info("Waiting for the executor lease: another attempt holds it", "instanceId", a.in.InstanceID,
				"holder", holder.Holder, "fence", holder.Fence, "killDeadline", holder.KillDeadline,
				"lostPredecessor", holder.Fence == a.previous.Fence)
		}
		a.beat(ctx, heartbeatDetails{Phase: phaseLease, WaitingFor: holder.Holder})
		wait := time.NewTimer(min(holder.ExpiresIn, a.every))
		select {
		case <-wait.C:
		case <-windowEnd.C:
			wait.Stop()
			return nil, windowElapsed(a.in, fmt.Sprintf("it ended while the attempt waited for the executor lease, held by %s (fence %d) until %s",
				holder.Holder, holder.Fence, holder.KillDeadline.UTC().Format(time.RFC3339)), "")
		case <-ctx.Done():
			wait.Stop()
			return nil, a.interrupted(ctx, "while waiting for the executor lease held by "+holder.Holder, "")
		}
	}
}
