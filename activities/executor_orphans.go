package activities

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"go.temporal.io/sdk/log"

	"github.com/svcupdate/svcupdate/internal/store"
)

const (
	// orphanKillWait bounds the wait for a killed group to be gone.
	orphanKillWait = 5 * time.Second
	// orphanPoll is how often that wait looks.
	orphanPoll = 20 * time.Millisecond
)

// ReapOrphans kills what executor workers that died on this host left
// running, then clears their leases, logging each. The worker calls it
// before it polls for updates: Pdeathsig ends a dead worker's update
// command, but not what the command started, and the lease holds up the
// instance's next attempt until its kill deadline. Outside Linux, where
// process identities cannot be read, it does nothing.
func (e *CommandExecutor) ReapOrphans(ctx context.Context, logger log.Logger) error {
	me, err := thisWorker()
	if err != nil {
		return err
	}
	if me.BootID == "" {
		logger.Warn("Update commands left running by a crashed worker cannot be found on this system (no /proc); run the worker under a supervisor that kills its process tree")
		return nil
	}
	leases, err := e.Leases.HostLeases(ctx, me.Host)
	if err != nil {
		return fmt.Errorf("looking for update commands a crashed worker left running: %w", err)
	}
	reaped := 0
	for _, l := range leases {
		if !holderDead(l.Worker, me) {
			continue // another worker of this host, alive
		}
		if err := reapLease(ctx, e.Leases, l, me, logger); err != nil {
			return err
		}
		reaped++
	}
	logger.Info("Looked for update commands left running by crashed workers of this host", "host", me.Host, "leases", len(leases), "cleared", reaped)
	return nil
}

// reapLease kills the process group lease l records, if it still runs,
// and clears the lease. Its holder was a worker of this host and is dead.
func reapLease(ctx context.Context, leases *store.Store, l store.Lease, me store.WorkerProcess, logger log.Logger) error {
	killed := false
	if l.Worker.BootID == me.BootID {
		if l.PGID != 0 {
			killed = killOrphanGroup(l.PGID, l.PGIDStarted)
		}
		// A worker killed right after starting a program had not recorded
		// its group yet: find what it started by the lease's fence and PID.
		if killMarkedProcesses(fenceVariable(l.Fence), workerVariable(l.Worker.PID)) > 0 {
			killed = true
		}
	}
	released, err := leases.ReleaseLease(ctx, l.InstanceID, l.Fence)
	if err != nil {
		return fmt.Errorf("clearing the executor lease of a dead worker: %w", err)
	}
	if released {
		logger.Warn("Cleared the executor lease of a dead worker of this host", "instanceId", l.InstanceID, "fence", l.Fence,
			"holder", l.Holder, "pgid", l.PGID, "killedProcessGroup", killed)
	}
	return nil
}

// killOrphanGroup SIGKILLs process group pgid, led by a dead worker's
// program that started at leaderStarted, and waits for it to be gone. It
// leaves the group alone when it is gone already or when its number now
// names another process (the kernel reuses a PID only once no group bears
// it), and reports whether it killed.
func killOrphanGroup(pgid int, leaderStarted int64) bool {
	started, err := processStarted(pgid)
	switch {
	case err == nil && started != leaderStarted:
		return false
	case err != nil && !groupRunning(pgid):
		return false
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	for deadline := time.Now().Add(orphanKillWait); groupRunning(pgid) && time.Now().Before(deadline); {
		time.Sleep(orphanPoll)
	}
	return true
}
