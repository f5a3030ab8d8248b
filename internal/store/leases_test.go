package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
)

func leaseClaim(instance, holder string, timeout time.Duration) store.LeaseClaim {
	return store.LeaseClaim{
		InstanceID: instance, Holder: holder, Timeout: timeout,
		Worker: store.WorkerProcess{Host: "exec-1", BootID: "boot-a", PID: 4242, Started: 777},
	}
}

func TestLeaseExcludesOthersUntilReleased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := store.New(pgtest.TestTx(t))

	first, err := s.TakeLease(ctx, leaseClaim("acme-prod", "attempt 1", time.Minute))
	if err != nil || !first.Taken || first.Broken != nil || first.Lease.Fence <= 0 {
		t.Fatalf("first take = %+v, %v; want a new lease with a fence", first, err)
	}
	if l := first.Lease; l.Holder != "attempt 1" || l.Worker.Host != "exec-1" || l.Worker.BootID != "boot-a" ||
		l.Worker.PID != 4242 || l.Worker.Started != 777 || l.PGID != 0 || l.ExpiresIn <= 50*time.Second || l.ExpiresIn > time.Minute {
		t.Errorf("lease as taken: %+v", l)
	}
	second, err := s.TakeLease(ctx, leaseClaim("acme-prod", "attempt 2", time.Minute))
	if err != nil || second.Taken || second.Lease.Fence != first.Lease.Fence || second.Lease.Holder != "attempt 1" {
		t.Fatalf("second take while held = %+v, %v; want the first holder reported", second, err)
	}
	// Another instance is another lease.
	if other, err := s.TakeLease(ctx, leaseClaim("globex-prod", "attempt 1", time.Minute)); err != nil || !other.Taken {
		t.Fatalf("take for another instance = %+v, %v", other, err)
	}

	if released, err := s.ReleaseLease(ctx, "acme-prod", first.Lease.Fence); err != nil || !released {
		t.Fatalf("release = %v, %v", released, err)
	}
	if released, err := s.ReleaseLease(ctx, "acme-prod", first.Lease.Fence); err != nil || released {
		t.Fatalf("second release = %v, %v; want nothing released", released, err)
	}
	third, err := s.TakeLease(ctx, leaseClaim("acme-prod", "attempt 2", time.Minute))
	if err != nil || !third.Taken || third.Broken != nil || third.Lease.Fence <= first.Lease.Fence {
		t.Fatalf("take after release = %+v, %v; want a new lease with a larger fence than %d", third, err, first.Lease.Fence)
	}
}

func TestLeaseIsBrokenOnlyAfterItsKillDeadline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := store.New(pgtest.TestTx(t))

	// A microsecond's lease: its kill deadline has passed by the next statement.
	lost, err := s.TakeLease(ctx, leaseClaim("acme-prod", "lost worker", time.Microsecond))
	if err != nil || !lost.Taken {
		t.Fatalf("take = %+v, %v", lost, err)
	}
	if err := s.RecordLeaseProcess(ctx, "acme-prod", lost.Lease.Fence, 5150, 888); err != nil {
		t.Fatal(err)
	}
	retry, err := s.TakeLease(ctx, leaseClaim("acme-prod", "retry", time.Minute))
	if err != nil || !retry.Taken || retry.Broken == nil {
		t.Fatalf("take after the kill deadline = %+v, %v; want the expired lease broken", retry, err)
	}
	if b := retry.Broken; b.Fence != lost.Lease.Fence || b.Holder != "lost worker" || b.PGID != 5150 || b.PGIDStarted != 888 || b.ExpiresIn > 0 {
		t.Errorf("broken lease reported as %+v", b)
	}
	if l := retry.Lease; l.Fence <= lost.Lease.Fence || l.Holder != "retry" || l.PGID != 0 {
		t.Errorf("new lease %+v: want a larger fence, the new holder and no process yet", l)
	}
	// The fenced-off holder learns it lost the lease when it next writes.
	wantErr(t, s.RenewLease(ctx, "acme-prod", lost.Lease.Fence, time.Minute), store.ErrLeaseLost,
		fmt.Sprintf(`the executor lease of instance "acme-prod" is no longer held under fence %d`, lost.Lease.Fence))
	if err := s.RecordLeaseProcess(ctx, "acme-prod", lost.Lease.Fence, 1, 1); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("record process under a lost lease: %v, want ErrLeaseLost", err)
	}
	if released, err := s.ReleaseLease(ctx, "acme-prod", lost.Lease.Fence); err != nil || released {
		t.Errorf("release of a lost lease = %v, %v; want the new holder's lease kept", released, err)
	}
}

func TestLeaseRenewalAndHostLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := store.New(pgtest.TestTx(t))

	taken, err := s.TakeLease(ctx, leaseClaim("acme-prod", "attempt 1", time.Microsecond))
	if err != nil || !taken.Taken {
		t.Fatalf("take = %+v, %v", taken, err)
	}
	if err := s.RenewLease(ctx, "acme-prod", taken.Lease.Fence, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Renewed before anyone broke it: held again, for an hour.
	if held, err := s.TakeLease(ctx, leaseClaim("acme-prod", "attempt 2", time.Minute)); err != nil || held.Taken {
		t.Fatalf("take after renewal = %+v, %v; want it still held", held, err)
	}
	if err := s.RecordLeaseProcess(ctx, "acme-prod", taken.Lease.Fence, 5150, 888); err != nil {
		t.Fatal(err)
	}
	elsewhere := leaseClaim("globex-prod", "attempt 1", time.Minute)
	elsewhere.Worker.Host = "exec-2"
	if _, err := s.TakeLease(ctx, elsewhere); err != nil {
		t.Fatal(err)
	}
	leases, err := s.HostLeases(ctx, "exec-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 {
		t.Fatalf("host exec-1 holds %d leases, want 1: %+v", len(leases), leases)
	}
	if l := leases[0]; l.InstanceID != "acme-prod" || l.Fence != taken.Lease.Fence || l.PGID != 5150 || l.PGIDStarted != 888 ||
		l.ExpiresIn < 59*time.Minute || !l.KillDeadline.After(l.StartedAt.Add(59*time.Minute)) {
		t.Errorf("host lease %+v: want the renewed deadline and the recorded process group", l)
	}
	if _, err := s.TakeLease(ctx, store.LeaseClaim{InstanceID: "acme-prod", Holder: "x"}); !errors.Is(err, store.ErrInvalidRequest) {
		t.Errorf("a claim without a timeout: %v, want ErrInvalidRequest", err)
	}
}

// Claimants racing for one instance's free lease: exactly one wins.
func TestLeaseHasOneHolderUnderConcurrentClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := store.New(pgtest.NewPool(t))
	const claimants = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		taken []int64
		errs  []error
	)
	for i := range claimants {
		wg.Go(func() {
			attempt, err := s.TakeLease(ctx, leaseClaim("acme-prod", fmt.Sprintf("claimant %d", i), time.Minute))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if attempt.Taken {
				taken = append(taken, attempt.Lease.Fence)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 || len(taken) != 1 {
		t.Fatalf("%d claimants took the lease (fences %v), errors %v; want exactly one", len(taken), taken, errs)
	}
}
