package workflows

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// fakeActivities stands in for the activities package: it records every
// call and lets a test decide the outcome of the executor, the mailer and
// the slot booking. Registered under the contract's activity names, so the
// workflow cannot tell it from the real thing.
type fakeActivities struct {
	mu          sync.Mutex
	transitions []RecordTransitionInput
	notices     []SendNoticeInput // in the order the workflow scheduled them
	noticeSeqs  []int64           // the activity ID (schedule sequence) of each
	bookings    []BookSlotsInput
	moves       []BookSlotsFromInput
	bookQueues  []string // the task queue of each booking
	releases    []ReleaseSlotsInput
	versions    []RecordVersionInput
	checks      []CheckInstanceInput
	abandons    []AbandonUpdateInput
	commits     []CommitTransitionInput // the lean lifecycle's, in order
	applies     []ApplyUpdateInput
	applyQueues []string
	// executing holds the instances whose ApplyUpdate is running;
	// releasedUnderExecutor the ones whose slots were released meanwhile.
	executing             map[string]bool
	releasedUnderExecutor []string
	// calls names every activity called, in the order the calls began.
	calls []string

	// instances is what CheckInstance finds, per instance ID: what the
	// rollout saw when the test did not say otherwise (expect).
	instances map[string]CheckInstanceResult
	// heldChecks is how many of an instance's next checks find its
	// rollout wave held; a negative count holds it for good.
	heldChecks map[string]int

	// Outcome hooks; nil means success.
	applyUpdate      func(ctx context.Context, in ApplyUpdateInput) error
	sendNotice       func(in SendNoticeInput) error
	bookSlots        func(in BookSlotsInput) error
	bookSlotsFrom    func(in BookSlotsFromInput) (BookSlotsFromResult, error)
	recordTransition func(in RecordTransitionInput) error
	releaseSlots     func(in ReleaseSlotsInput) error
	checkInstance    func(in CheckInstanceInput) (CheckInstanceResult, error)
}

// activityRegistrar is what both the test environment and a real worker offer.
type activityRegistrar interface {
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

// register registers every fake except ApplyUpdate, which register
// ExecutorOn puts on the executor's own worker.
func (f *fakeActivities) register(r activityRegistrar) {
	r.RegisterActivityWithOptions(f.RecordTransition, activity.RegisterOptions{Name: ActivityRecordTransition})
	r.RegisterActivityWithOptions(f.SendNotice, activity.RegisterOptions{Name: ActivitySendNotice})
	r.RegisterActivityWithOptions(f.BookSlots, activity.RegisterOptions{Name: ActivityBookSlots})
	r.RegisterActivityWithOptions(f.BookSlotsFrom, activity.RegisterOptions{Name: ActivityBookSlotsFrom})
	r.RegisterActivityWithOptions(f.ReleaseSlots, activity.RegisterOptions{Name: ActivityReleaseSlots})
	r.RegisterActivityWithOptions(f.RecordInstanceVersion, activity.RegisterOptions{Name: ActivityRecordVersion})
	r.RegisterActivityWithOptions(f.CheckInstance, activity.RegisterOptions{Name: ActivityCheckInstance})
	r.RegisterActivityWithOptions(f.AbandonUpdate, activity.RegisterOptions{Name: ActivityAbandonUpdate})
	r.RegisterActivityWithOptions(f.CommitTransition, activity.RegisterOptions{Name: ActivityCommitTransition})
}

// CommitTransition keeps the commit and files its parts where the old
// path's activities file theirs (transitions, notices, releases,
// versions), so one assertion reads both paths.
func (f *fakeActivities) CommitTransition(_ context.Context, in CommitTransitionInput) (CommitTransitionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityCommitTransition)
	if f.recordTransition != nil {
		if err := f.recordTransition(in.Transition); err != nil {
			return CommitTransitionResult{}, err
		}
	}
	f.commits = append(f.commits, in)
	f.transitions = append(f.transitions, in.Transition)
	f.notices = append(f.notices, in.Notices...)
	res := CommitTransitionResult{AuditID: int64(len(f.transitions))}
	snap := in.Transition.Snapshot
	if in.ReleaseSlots {
		f.releases = append(f.releases, ReleaseSlotsInput{InstanceID: snap.InstanceID, OfferedVersion: snap.OfferedVersion})
		if f.executing[snap.InstanceID] {
			f.releasedUnderExecutor = append(f.releasedUnderExecutor, snap.InstanceID)
		}
		res.Released = 2
	}
	if in.RecordVersion != "" {
		f.versions = append(f.versions, RecordVersionInput{InstanceID: snap.InstanceID, Version: in.RecordVersion})
	}
	return res, nil
}

// queuedReminders lists the reminder kinds the last commit of instanceID
// left queued.
func (f *fakeActivities) queuedReminders(instanceID string) []NoticeKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.commits) - 1; i >= 0; i-- {
		if f.commits[i].Transition.Snapshot.InstanceID == instanceID {
			var kinds []NoticeKind
			for _, r := range f.commits[i].Reminders {
				kinds = append(kinds, r.Notice.Kind)
			}
			return kinds
		}
	}
	return nil
}

// expect makes CheckInstance find in's instance as the rollout that
// started in found it, unless the test set it otherwise.
func (f *fakeActivities) expect(in Input) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.instances == nil {
		f.instances = map[string]CheckInstanceResult{}
	}
	if _, set := f.instances[in.Instance.ID]; !set {
		f.instances[in.Instance.ID] = CheckInstanceResult{CurrentVersion: in.CurrentVersion, Mandatory: in.Mandatory}
	}
}

func (f *fakeActivities) registerExecutor(r activityRegistrar) {
	r.RegisterActivityWithOptions(f.ApplyUpdate, activity.RegisterOptions{Name: ActivityApplyUpdate})
}

func (f *fakeActivities) RecordTransition(_ context.Context, in RecordTransitionInput) (RecordTransitionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityRecordTransition)
	if f.recordTransition != nil {
		if err := f.recordTransition(in); err != nil {
			return RecordTransitionResult{}, err
		}
	}
	f.transitions = append(f.transitions, in)
	return RecordTransitionResult{AuditID: int64(len(f.transitions))}, nil
}

// SendNotice keeps the notices in scheduling order: the workflow no longer
// waits for one notice before the next, so their activities may run in any
// order, but their activity IDs are the workflow's schedule sequence.
func (f *fakeActivities) SendNotice(ctx context.Context, in SendNoticeInput) (SendNoticeResult, error) {
	seq, _ := strconv.ParseInt(activity.GetInfo(ctx).ActivityID, 10, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivitySendNotice)
	at := len(f.notices)
	for at > 0 && f.notices[at-1].WorkflowID == in.WorkflowID && f.noticeSeqs[at-1] > seq {
		at--
	}
	f.notices = slices.Insert(f.notices, at, in)
	f.noticeSeqs = slices.Insert(f.noticeSeqs, at, seq)
	if f.sendNotice != nil {
		if err := f.sendNotice(in); err != nil {
			return SendNoticeResult{}, err
		}
	}
	return SendNoticeResult{Recipients: 2, Emailed: true}, nil
}

func (f *fakeActivities) BookSlots(ctx context.Context, in BookSlotsInput) (BookSlotsResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityBookSlots)
	f.bookings = append(f.bookings, in)
	f.bookQueues = append(f.bookQueues, activity.GetInfo(ctx).TaskQueue)
	if f.bookSlots != nil {
		if err := f.bookSlots(in); err != nil {
			return BookSlotsResult{}, err
		}
	}
	return BookSlotsResult{PrimarySlotID: 1, SecondarySlotID: 2}, nil
}

// BookSlotsFrom books, unless the test says otherwise, a primary at From
// and a secondary a week later, both of 12 hours.
func (f *fakeActivities) BookSlotsFrom(_ context.Context, in BookSlotsFromInput) (BookSlotsFromResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityBookSlotsFrom)
	f.moves = append(f.moves, in)
	if f.bookSlotsFrom != nil {
		return f.bookSlotsFrom(in)
	}
	return BookSlotsFromResult{PrimaryStart: in.From, PrimaryWindow: 12 * time.Hour, SecondaryStart: in.From.Add(7 * 24 * time.Hour), SecondaryWindow: 12 * time.Hour}, nil
}

func (f *fakeActivities) ReleaseSlots(_ context.Context, in ReleaseSlotsInput) (ReleaseSlotsResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityReleaseSlots)
	if f.releaseSlots != nil {
		if err := f.releaseSlots(in); err != nil {
			return ReleaseSlotsResult{}, err
		}
	}
	f.releases = append(f.releases, in)
	if f.executing[in.InstanceID] {
		f.releasedUnderExecutor = append(f.releasedUnderExecutor, in.InstanceID)
	}
	return ReleaseSlotsResult{Released: 2}, nil
}

func (f *fakeActivities) RecordInstanceVersion(_ context.Context, in RecordVersionInput) (RecordVersionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityRecordVersion)
	f.versions = append(f.versions, in)
	return RecordVersionResult{PreviousVersion: "9.1.0"}, nil
}

func (f *fakeActivities) CheckInstance(_ context.Context, in CheckInstanceInput) (CheckInstanceResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityCheckInstance)
	f.checks = append(f.checks, in)
	if f.checkInstance != nil {
		return f.checkInstance(in)
	}
	res := f.instances[in.InstanceID]
	if n := f.heldChecks[in.InstanceID]; n != 0 {
		res.Held = true
		if n > 0 {
			f.heldChecks[in.InstanceID] = n - 1
		}
	}
	return res, nil
}

func (f *fakeActivities) AbandonUpdate(_ context.Context, in AbandonUpdateInput) (AbandonUpdateResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, ActivityAbandonUpdate)
	f.abandons = append(f.abandons, in)
	return AbandonUpdateResult{Released: 2}, nil
}

func (f *fakeActivities) ApplyUpdate(ctx context.Context, in ApplyUpdateInput) (ApplyUpdateResult, error) {
	f.mu.Lock()
	f.applies = append(f.applies, in)
	f.calls = append(f.calls, ActivityApplyUpdate)
	f.applyQueues = append(f.applyQueues, activity.GetInfo(ctx).TaskQueue)
	if f.executing == nil {
		f.executing = map[string]bool{}
	}
	f.executing[in.InstanceID] = true
	hook := f.applyUpdate
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.executing[in.InstanceID] = false
	}()
	if hook != nil {
		if err := hook(ctx, in); err != nil {
			return ApplyUpdateResult{}, err
		}
	}
	return ApplyUpdateResult{Output: "updated to " + in.TargetVersion}, nil
}

// lastCall is the position of the last call of activity in calls, or -1.
func (f *fakeActivities) lastCall(activity string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if f.calls[i] == activity {
			return i
		}
	}
	return -1
}

// noticeKinds lists the kinds of every SendNotice call, in order.
func (f *fakeActivities) noticeKinds() []NoticeKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	return kindsOf(f.notices)
}

// actions lists the audit actions recorded, in order.
func (f *fakeActivities) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	actions := make([]string, len(f.transitions))
	for i, tr := range f.transitions {
		actions[i] = tr.Action
	}
	return actions
}

func (f *fakeActivities) lastTransition() RecordTransitionInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.transitions[len(f.transitions)-1]
}

func (f *fakeActivities) counts() (bookings, releases, versions, applies int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bookings), len(f.releases), len(f.versions), len(f.applies)
}

// executingOn reports whether ApplyUpdate is running for instanceID.
func (f *fakeActivities) executingOn(instanceID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.executing[instanceID]
}

// slotReleases reports how often instanceID's slots were released, and how
// often while its executor was still running.
func (f *fakeActivities) slotReleases(instanceID string) (released, underExecutor int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.releases {
		if r.InstanceID == instanceID {
			released++
		}
	}
	for _, id := range f.releasedUnderExecutor {
		if id == instanceID {
			underExecutor++
		}
	}
	return released, underExecutor
}

// lastTransitionOf is the last audit row of instanceID's workflow (the
// dev-server tests share one set of fakes).
func (f *fakeActivities) lastTransitionOf(instanceID string) (RecordTransitionInput, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.transitions) - 1; i >= 0; i-- {
		if f.transitions[i].Snapshot.InstanceID == instanceID {
			return f.transitions[i], true
		}
	}
	return RecordTransitionInput{}, false
}

// heartbeatUntilCancelled is an executor that works until it is cancelled.
// It heartbeats, as the real one does: that is how a worker learns of a
// cancellation.
func heartbeatUntilCancelled(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		activity.RecordHeartbeat(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// blockUntilCancelled is an executor that hangs until Temporal gives up on
// it (window end) or cancels it.
func blockUntilCancelled(ctx context.Context, _ ApplyUpdateInput) error {
	<-ctx.Done()
	return ctx.Err()
}

// days is a readable duration for schedules.
func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

// primaryFails is an executor whose primary attempt fails for good with
// message and whose secondary attempt succeeds.
func primaryFails(message string) func(context.Context, ApplyUpdateInput) error {
	return func(_ context.Context, in ApplyUpdateInput) error {
		if in.Attempt == SlotPrimary {
			return temporal.NewNonRetryableApplicationError(message, ErrTypeUpdateFailed, nil)
		}
		return nil
	}
}
