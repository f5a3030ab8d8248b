package workflows

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// The Rollout workflow's contract: one per release, run by the workers, it
// books and starts the release's ServiceUpdates in batches and gates their
// execution in waves.

// RolloutWorkflowType is the registered name of the Rollout workflow.
const RolloutWorkflowType = "Rollout"

// RolloutID is the ID of the rollout of a release: one at a time.
func RolloutID(version string) string { return "rollout:" + version }

// Rollout Updates (operators' commands), query and signal.
const (
	UpdatePause  = "Pause"
	UpdateResume = "Resume"
	UpdateAbort  = "Abort"
	// QueryProgress returns a RolloutProgress.
	QueryProgress = "Progress"
	// SignalRescan asks a running rollout to walk the fleet again (a
	// re-run of `starter rollout`), for instances added since.
	SignalRescan = "Rescan"
)

// Rollout activities.
const (
	ActivityPlanWaves      = "PlanWaves"
	ActivityStartBatch     = "StartRolloutBatch"
	ActivityWaveReport     = "WaveReport"
	ActivitySetWaveState   = "SetWaveState"
	ActivityAlertOperators = "AlertOperators"
	ActivityCancelWaves    = "CancelWaves"
	ActivityMoveWaves      = "MoveWaves"
)

// SearchAttrRolloutPhase is the phase of a Rollout (RolloutPhase values),
// beside TargetVersion, its release.
var SearchAttrRolloutPhase = temporal.NewSearchAttributeKeyKeyword("RolloutPhase")

// RolloutPhase is where a rollout stands.
type RolloutPhase string

const (
	PhaseStarting RolloutPhase = "Starting" // booking and starting updates
	PhaseWaiting  RolloutPhase = "Waiting"  // every candidate started; waiting for the next wave's first slot
	PhasePaused   RolloutPhase = "Paused"   // a wave is held: Resume or Abort
	PhaseDone     RolloutPhase = "Done"     // every wave open
	PhaseAborted  RolloutPhase = "Aborted"  // the held waves were cancelled
)

// Wave gates: pending until the rollout decides at the wave's first slot,
// then open (its updates run), held (they wait) or aborted (cancelled).
// The sandboxes' wave is open from the start.
const (
	WavePending = "pending"
	WaveOpen    = "open"
	WaveHeld    = "held"
	WaveAborted = "aborted"
)

// Closed reports whether a rollout in phase p has ended.
func (p RolloutPhase) Closed() bool { return p == PhaseDone || p == PhaseAborted }

// ParseWaves reads waves such as "5%,25%,100%": cumulative percentages of
// the production fleet, increasing, the last 100.
func ParseWaves(s string) ([]int, error) {
	var waves []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(part), "%"))
		if err != nil || n < 1 || n > 100 || (len(waves) > 0 && n <= waves[len(waves)-1]) {
			return nil, fmt.Errorf("waves %q: %q is not a percentage above the one before (accepted: increasing percentages ending at 100%%, such as 5%%,25%%,100%%)", s, part)
		}
		waves = append(waves, n)
	}
	if waves[len(waves)-1] != 100 {
		return nil, fmt.Errorf("waves %q: the last wave must reach 100%% (accepted: increasing percentages ending at 100%%, such as 5%%,25%%,100%%)", s)
	}
	return waves, nil
}

// RolloutKey is a place in the order a rollout walks the fleet:
// sandboxes first, then production, each by instance ID.
type RolloutKey struct {
	Production bool   `json:"production"`
	InstanceID string `json:"instanceId"`
}

// RolloutWave is one wave: wave 0 the sandboxes, then production in the
// operator's waves; it ends at Last (inclusive).
type RolloutWave struct {
	Wave int        `json:"wave"`
	Size int        `json:"size"` // instances in the wave when planned
	Last RolloutKey `json:"last"`
}

// RolloutSchedule is what every update a rollout starts carries (see
// Input), resolved once by the starter from its configuration.
type RolloutSchedule struct {
	ReminderOffsets     []time.Duration `json:"reminderOffsets"`
	WindowLength        time.Duration   `json:"windowLength"`
	SecondaryMinGap     time.Duration   `json:"secondaryMinGap"`
	MinNotice           time.Duration   `json:"minNotice"`
	RescheduleMinNotice time.Duration   `json:"rescheduleMinNotice"`
}

// RolloutInput starts a Rollout.
type RolloutInput struct {
	Version string `json:"version"`
	// Waves are cumulative percentages of production, the last 100.
	Waves []int `json:"waves"`
	// MaxFailure is the share (0 to 1) of the earlier waves' updates that
	// may have failed for a wave to run.
	MaxFailure  float64         `json:"maxFailure"`
	DryRun      bool            `json:"dryRun,omitempty"`
	BatchSize   int             `json:"batchSize"`
	Schedule    RolloutSchedule `json:"schedule"`
	RequestedBy string          `json:"requestedBy"`
	// State is what a rollout carries into its next run (continue as new).
	State *RolloutState `json:"state,omitempty"`
}

// RolloutState is a rollout's progress, carried across continue as new.
type RolloutState struct {
	Waves []RolloutWave `json:"waves"`
	// Scan is the walk of the fleet in progress: the wave and the last
	// key done. Rescans counts the walks asked for, Scanned the finished.
	WaveIndex int        `json:"waveIndex"`
	Cursor    RolloutKey `json:"cursor"`
	Rescans   int        `json:"rescans"`
	Scanned   int        `json:"scanned"`
	// SlotsFrom is where the current wave's slots start: after the last
	// primary slot of the wave before; WaveLastStart is the current
	// wave's latest primary so far.
	SlotsFrom     time.Time `json:"slotsFrom"`
	WaveLastStart time.Time `json:"waveLastStart"`
	// Outcomes counts what the walk in progress (or the last) did; the
	// members an earlier walk started are skipped and not counted.
	Outcomes map[string]int `json:"outcomes"`
	Details  []string       `json:"details,omitempty"` // the latest failures, holds and plans
	Paused   string         `json:"paused,omitempty"`  // why, when paused
	// MoveTo and ResumedBy: a Resume asked the held waves moved
	// (ResumeInput); Moving is the time of the move under way, Moves
	// counts the moves made.
	MoveTo    time.Time    `json:"moveTo,omitzero"`
	ResumedBy string       `json:"resumedBy,omitempty"`
	Moving    time.Time    `json:"moving,omitzero"`
	Moves     int          `json:"moves,omitempty"`
	Aborted   bool         `json:"aborted,omitempty"`
	Reports   []WaveReport `json:"reports,omitempty"`
	StartedAt time.Time    `json:"startedAt"`
	// ScanStartedAt and ScanProcessed time the walk in progress, for the ETA.
	ScanStartedAt time.Time `json:"scanStartedAt"`
	ScanProcessed int       `json:"scanProcessed"`
}

// WaveReport is a wave's started updates as Postgres holds them.
type WaveReport struct {
	Wave       int            `json:"wave"`
	State      string         `json:"state"` // its gate: pending, open, held, aborted
	Members    int            `json:"members"`
	ByStatus   map[Status]int `json:"byStatus"`
	FirstStart time.Time      `json:"firstStart"`
	LastStart  time.Time      `json:"lastStart"`
}

// Failed counts the wave's updates with a failed attempt: closed Failed,
// or gone to their secondary slot.
func (r WaveReport) Failed() int {
	return r.ByStatus[StatusFailed] + r.ByStatus[StatusFallbackScheduled]
}

// RolloutProgress is the Progress query's answer.
type RolloutProgress struct {
	Version     string         `json:"version"`
	Phase       RolloutPhase   `json:"phase"`
	DryRun      bool           `json:"dryRun,omitempty"`
	Candidates  int            `json:"candidates"` // the fleet when planned
	Processed   int            `json:"processed"`  // candidates done in the walk in progress
	ScanDone    bool           `json:"scanDone"`   // every candidate started or planned
	Rescans     int            `json:"rescans"`
	Outcomes    map[string]int `json:"outcomes"`
	ByStatus    map[Status]int `json:"byStatus"` // started updates, at the last report
	CurrentWave int            `json:"currentWave"`
	Waves       []WaveReport   `json:"waves"`
	Paused      string         `json:"paused,omitempty"`
	Details     []string       `json:"details,omitempty"`
	// MovingTo: a Resume's move of the held waves to slots from this time
	// is under way.
	MovingTo time.Time `json:"movingTo,omitzero"`
	// ETA: when the walk ends while starting; when the last wave's first
	// slot comes once every candidate is started.
	ETA time.Time `json:"eta,omitzero"`
	// The rollout's own --waves and --max-failure, which it keeps for
	// life; nil from workers of release 3.
	WavePercents []int   `json:"wavePercents,omitempty"`
	MaxFailure   float64 `json:"maxFailure"`
}

// PauseInput holds a rollout: no more starts, no more waves opened.
type PauseInput struct {
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// ResumeInput opens the held wave (its updates run) and goes on.
type ResumeInput struct {
	By string `json:"by"`
	// MoveTo, when set, first moves the updates of the held wave and of
	// every later wave not yet open that still wait for their slots to the
	// earliest free slots from it, wave after wave; the held wave then
	// opens and runs at its new slots.
	MoveTo time.Time `json:"moveTo,omitzero"`
}

// AbortInput cancels the updates of every wave not yet open and ends
// the rollout.
type AbortInput struct {
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// PlanWavesInput cuts the fleet into waves.
type PlanWavesInput struct {
	Version string `json:"version"`
	Waves   []int  `json:"waves"`
}

// PlanWavesResult lists the waves, sandboxes first.
type PlanWavesResult struct {
	Waves []RolloutWave `json:"waves"`
}

// StartBatchInput books and starts the next page of candidates of one
// wave, after After and up to Through.
type StartBatchInput struct {
	Version     string          `json:"version"`
	Wave        int             `json:"wave"`
	After       RolloutKey      `json:"after"`
	Through     RolloutKey      `json:"through"`
	Limit       int             `json:"limit"`
	SlotsFrom   time.Time       `json:"slotsFrom,omitzero"`
	Schedule    RolloutSchedule `json:"schedule"`
	DryRun      bool            `json:"dryRun,omitempty"`
	RequestedBy string          `json:"requestedBy"`
	// FirstTasksAt defers the first task of each update started until
	// then, and no later than an hour before its primary start; zero runs
	// it at once.
	FirstTasksAt time.Time `json:"firstTasksAt,omitzero"`
}

// StartBatchResult is what a batch did.
type StartBatchResult struct {
	Outcomes map[string]int `json:"outcomes"`
	// Next is the last key the batch read; Exhausted: the wave has no
	// candidate left after it.
	Next      RolloutKey `json:"next"`
	Exhausted bool       `json:"exhausted"`
	Processed int        `json:"processed"`
	// LastStart is the latest primary slot booked.
	LastStart time.Time `json:"lastStart,omitzero"`
	Details   []string  `json:"details,omitempty"`
}

// WaveReportInput asks for a rollout's waves.
type WaveReportInput struct {
	Version string `json:"version"`
}

// WaveReportResult holds each wave with started updates.
type WaveReportResult struct {
	Waves []WaveReport `json:"waves"`
}

// SetWaveStateInput sets the gate of waves.
type SetWaveStateInput struct {
	Version string `json:"version"`
	Waves   []int  `json:"waves"`
	State   string `json:"state"`
}

// AlertOperatorsInput writes the operators' in-product alert that a
// rollout paused.
type AlertOperatorsInput struct {
	Version string    `json:"version"`
	Wave    int       `json:"wave"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
	// Move numbers the alert of a move that left updates where they were;
	// 0 for the wave's hold.
	Move int `json:"move,omitempty"`
}

// CancelWavesInput cancels the updates of the given waves.
type CancelWavesInput struct {
	Version string `json:"version"`
	Waves   []int  `json:"waves"`
	Reason  string `json:"reason"`
}

// CancelWavesResult counts the updates asked to cancel.
type CancelWavesResult struct {
	Cancelled int `json:"cancelled"`
}

// MoveWavesInput moves the updates of waves that still wait for their
// slots (Scheduled or Approved) to the earliest free slots from From:
// each wave's after the last primary of the wave before, so waves keep
// their order. An update already starting at or after that time stays.
type MoveWavesInput struct {
	Version     string    `json:"version"`
	Waves       []int     `json:"waves"`
	From        time.Time `json:"from"`
	RequestedBy string    `json:"requestedBy"`
	Reason      string    `json:"reason,omitempty"`
}

// MoveWavesResult counts what the move did.
type MoveWavesResult struct {
	Moved    int `json:"moved"`
	Kept     int `json:"kept"`     // already at or after the time
	NotMoved int `json:"notMoved"` // refused or unanswered: see Details
	// LastStart is the latest primary start of the moved waves.
	LastStart time.Time `json:"lastStart,omitzero"`
	Details   []string  `json:"details,omitempty"`
}
