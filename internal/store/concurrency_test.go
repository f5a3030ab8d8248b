package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// concurrencyConns is the pool size of the concurrency tests: enough
// connections that transactions really overlap in Postgres, few enough to
// leave room for the other tests sharing the server.
const concurrencyConns = 16

// concurrentStore returns a store loaded with fl on a fresh database (real
// concurrency needs committed transactions) with a larger pool.
func concurrentStore(t testing.TB, fl *fleet.Fleet) *store.Store {
	t.Helper()
	u, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", fmt.Sprint(concurrencyConns))
	u.RawQuery = q.Encode()
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return storetest.Load(t, pool, fl)
}

// runTogether runs fn(0..n-1) in n goroutines released at once.
func runTogether(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func TestConcurrentBookingsNeverOverbook(t *testing.T) {
	const instances, capacity = 500, 50
	fl := storetest.Fleet(instances, instances)
	fl.Releases[2].Slots[0].Capacity = capacity
	s := concurrentStore(t, fl)

	var booked, full atomic.Int32
	var unexpected sync.Map
	runTogether(instances, func(i int) {
		_, err := s.BookSlots(context.Background(), storetest.Booking(fmt.Sprintf("inst-%03d", i), 0, 1))
		switch {
		case err == nil:
			booked.Add(1)
		case errors.Is(err, store.ErrSlotFull):
			full.Add(1)
		default:
			unexpected.Store(i, err)
		}
	})
	unexpected.Range(func(i, err any) bool { t.Errorf("instance %d: %v", i, err); return true })
	if booked.Load() != capacity || full.Load() != instances-capacity {
		t.Fatalf("%d booked, %d store.ErrSlotFull; want %d and %d", booked.Load(), full.Load(), capacity, instances-capacity)
	}
	// The refused bookings took no secondary place either.
	if usage := storetest.Usage(t, s); !reflect.DeepEqual(usage, []int{capacity, capacity, 0, 0, 0}) {
		t.Fatalf("usage = %v", usage)
	}
}

// 200 concurrent reschedules of 100 updates (two at once for each) across
// 5 slots with only 10 places to spare: every slot's counter ends equal to
// its real reservations, and every update still holds exactly its two.
func TestRebookingStormKeepsCountersTrue(t *testing.T) {
	const instances, reschedules, capacity = 100, 200, 42
	ctx := context.Background()
	s := concurrentStore(t, storetest.Fleet(instances, capacity))
	for i := range instances {
		storetest.Open(t, s, fmt.Sprintf("inst-%03d", i))
		if _, err := s.BookSlots(ctx, storetest.Booking(fmt.Sprintf("inst-%03d", i), i%5, (i+2)%5)); err != nil {
			t.Fatal(err)
		}
	}

	var moved, full atomic.Int32
	var unexpected sync.Map
	runTogether(reschedules, func(g int) {
		rng := rand.New(rand.NewPCG(uint64(g), 1))
		p := rng.IntN(5)
		sec := (p + 1 + rng.IntN(4)) % 5
		_, err := s.BookSlots(ctx, storetest.Booking(fmt.Sprintf("inst-%03d", g%instances), p, sec))
		switch {
		case err == nil:
			moved.Add(1)
		case errors.Is(err, store.ErrSlotFull):
			full.Add(1)
		default:
			unexpected.Store(g, err)
		}
	})
	unexpected.Range(func(g, err any) bool { t.Errorf("reschedule %d: %v", g, err); return true })
	t.Logf("%d reschedules applied, %d refused with store.ErrSlotFull", moved.Load(), full.Load())

	total := 0
	for _, b := range storetest.Usage(t, s) { // fails on any counter != reservations
		total += b
	}
	if total != 2*instances {
		t.Fatalf("%d reservations in total, want %d", total, 2*instances)
	}
	storetest.CheckBookings(t, s)
	for i := range instances {
		id := fmt.Sprintf("inst-%03d", i)
		b, err := s.Bookings(ctx, id, "9.2.0")
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 2 || b[0].SlotID == b[1].SlotID {
			t.Fatalf("%s holds %+v, want a primary and a different secondary", id, b)
		}
	}
}

// A rollout books many instances at once, each called twice (a re-run
// racing the first run): each instance ends with one pair or
// store.ErrNoCapacity, both calls agree, and no slot is overbooked.
func TestConcurrentRolloutBookings(t *testing.T) {
	const instances, capacity = 100, 30
	ctx := context.Background()
	s := concurrentStore(t, storetest.Fleet(instances, capacity))
	results := make([]workflows.Input, 2*instances)
	errs := make([]error, 2*instances)
	runTogether(2*instances, func(g int) {
		p := store.BookRolloutSlotsParams{InstanceID: fmt.Sprintf("inst-%03d", g%instances), Version: "9.2.0", Now: storetest.PeriodStart}
		results[g], errs[g] = s.BookRolloutSlots(ctx, p)
	})
	placed := 0
	for i := range instances {
		a, b := results[i], results[i+instances]
		errA, errB := errs[i], errs[i+instances]
		switch {
		case errA == nil && errB == nil:
			if !reflect.DeepEqual(a, b) {
				t.Errorf("inst-%03d: the two calls disagree:\n%+v\n%+v", i, a, b)
			}
			placed++
		case errors.Is(errA, store.ErrNoCapacity) && errors.Is(errB, store.ErrNoCapacity):
		default:
			t.Errorf("inst-%03d: %v / %v", i, errA, errB)
		}
	}
	// 5 slots of 30 places, a pair each: at most 75 instances fit. Places
	// are only ever taken, so an instance refused saw at most one slot
	// with free places, and that slot's 30 are all that can stay free:
	// at least 60 instances are placed.
	total := 0
	for _, b := range storetest.Usage(t, s) {
		total += b
	}
	if total != 2*placed || placed < 60 || placed > 75 {
		t.Fatalf("%d instances placed with %d reservations", placed, total)
	}
	storetest.CheckBookings(t, s)
	t.Logf("%d of %d instances placed", placed, instances)
}

// BenchmarkBookSlots measures new bookings, all into the same two slots
// (the worst case: every transaction waits for the same two row locks).
func BenchmarkBookSlots(b *testing.B) {
	ctx := context.Background()
	s := concurrentStore(b, storetest.Fleet(b.N, b.N))
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			if _, err := s.BookSlots(ctx, storetest.Booking(fmt.Sprintf("inst-%03d", i), 0, 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bookings/s")
}

// BenchmarkRebookSlots measures reschedules of 1,000 updates across the
// five slots (each rebooking gives back two places and takes two).
func BenchmarkRebookSlots(b *testing.B) {
	const updates = 1000
	ctx := context.Background()
	s := concurrentStore(b, storetest.Fleet(updates, updates))
	for i := range updates {
		if _, err := s.BookSlots(ctx, storetest.Booking(fmt.Sprintf("inst-%03d", i), 0, 1)); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			p := int(i % 5)
			if _, err := s.BookSlots(ctx, storetest.Booking(fmt.Sprintf("inst-%03d", i%updates), p, (p+2)%5)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rebookings/s")
}
