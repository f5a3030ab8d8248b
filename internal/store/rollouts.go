package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/workflows"
)

// A Rollout walks the fleet in one order, sandboxes first and then by
// instance ID, each instance at a key in that order; a wave is the run of
// keys up to and including its last one.

const countKindsSQL = `
SELECT count(*) FILTER (WHERE kind <> '` + fleet.KindProduction + `'), count(*) FILTER (WHERE kind = '` + fleet.KindProduction + `')
FROM instances`

const nthProductionSQL = `
SELECT id FROM instances WHERE kind = '` + fleet.KindProduction + `' ORDER BY id OFFSET $1 LIMIT 1`

const lastSandboxSQL = `
SELECT coalesce(max(id), '') FROM instances WHERE kind <> '` + fleet.KindProduction + `'`

const abortedWavesSQL = `
SELECT coalesce(array_agg(wave ORDER BY wave), '{}') FROM rollout_waves WHERE version = $1 AND state = '` + workflows.WaveAborted + `'`

const addWaveSQL = `
INSERT INTO rollout_waves (version, wave, state) VALUES ($1, $2, $3) ON CONFLICT (version, wave) DO NOTHING`

// PlanWaves cuts the fleet into the waves of a rollout of version:
// wave 0 holds every sandbox, the production waves end at the given
// cumulative percentages of production (the last is 100). Each wave gets
// its gate row once: sandboxes open, the others pending, so planning again
// (a re-run, a continued rollout) keeps every decision made.
func (s *Store) PlanWaves(ctx context.Context, version string, percents []int) ([]workflows.RolloutWave, error) {
	if err := requireRelease(ctx, s.db, version); err != nil {
		return nil, err
	}
	var aborted []int
	if err := s.db.QueryRow(ctx, abortedWavesSQL, version).Scan(&aborted); err != nil {
		return nil, mapError(err, "read the aborted waves of "+version)
	}
	if len(aborted) > 0 {
		// Their gates stay closed: updates started into them would wait
		// at their slots for good.
		return nil, errorf(ErrInvalidRequest, "the rollout of %s was aborted (waves %v cancelled), and an aborted rollout is not started again: roll out a newer release",
			version, aborted)
	}
	var sandboxes, production int
	if err := s.db.QueryRow(ctx, countKindsSQL).Scan(&sandboxes, &production); err != nil {
		return nil, mapError(err, "count the fleet")
	}
	var lastSandbox string
	if err := s.db.QueryRow(ctx, lastSandboxSQL).Scan(&lastSandbox); err != nil {
		return nil, mapError(err, "find the last sandbox")
	}
	waves := []workflows.RolloutWave{{Wave: 0, Size: sandboxes, Last: workflows.RolloutKey{InstanceID: lastSandbox}}}
	taken := 0
	for i, pct := range percents {
		end := (production*pct + 99) / 100 // rounded up: a small fleet's 5% is one instance
		w := workflows.RolloutWave{Wave: i + 1, Size: end - taken, Last: waves[len(waves)-1].Last}
		if end > taken {
			w.Last.Production = true
			if err := s.db.QueryRow(ctx, nthProductionSQL, end-1).Scan(&w.Last.InstanceID); err != nil {
				return nil, mapError(err, "find the end of wave "+fmt.Sprint(i+1))
			}
			taken = end
		}
		waves = append(waves, w)
	}
	for _, w := range waves {
		state := workflows.WavePending
		if w.Wave == 0 {
			state = workflows.WaveOpen
		}
		if _, err := s.db.Exec(ctx, addWaveSQL, version, w.Wave, state); err != nil {
			return nil, mapError(err, fmt.Sprintf("record wave %d of %s", w.Wave, version))
		}
	}
	return waves, nil
}

const rolloutPageSQL = candidateSelect + `
WHERE (i.kind = '` + fleet.KindProduction + `', i.id) > ($3::boolean, $4::text)
  AND (i.kind = '` + fleet.KindProduction + `', i.id) <= ($5::boolean, $6::text)
  AND NOT EXISTS (SELECT 1 FROM rollout_members m WHERE m.version = $1 AND m.instance_id = i.id)` + candidateOrder + `
LIMIT $7`

// RolloutPage lists up to limit candidates of a rollout of version after
// the key after and up to through, leaving out the members: instances
// whose update the rollout has started already. A re-run of a finished
// rollout reads empty pages, and never asks Temporal about them.
func (s *Store) RolloutPage(ctx context.Context, version string, after, through workflows.RolloutKey, limit int) ([]RolloutCandidate, error) {
	rows, err := s.db.Query(ctx, rolloutPageSQL, version, closedStatuses, after.Production, after.InstanceID, through.Production, through.InstanceID, limit)
	if err != nil {
		return nil, mapError(err, "page the rollout candidates of "+version)
	}
	list, err := pgx.CollectRows(rows, scanCandidate)
	return list, mapError(err, "page the rollout candidates of "+version)
}

const addMembersSQL = `
INSERT INTO rollout_members (version, instance_id, wave, workflow_id)
SELECT $1, m.instance_id, $2, m.workflow_id FROM unnest($3::text[], $4::text[]) AS m (instance_id, workflow_id)
ON CONFLICT (version, instance_id) DO NOTHING`

// AddRolloutMembers records that the updates of instanceIDs in wave are
// started, in one statement; recording one again changes nothing.
func (s *Store) AddRolloutMembers(ctx context.Context, version string, wave int, instanceIDs []string) error {
	if len(instanceIDs) == 0 {
		return nil
	}
	workflowIDs := make([]string, len(instanceIDs))
	for i, id := range instanceIDs {
		workflowIDs[i] = workflows.WorkflowID(id, version)
	}
	_, err := s.db.Exec(ctx, addMembersSQL, version, wave, instanceIDs, workflowIDs)
	return mapError(err, fmt.Sprintf("record %d started updates in wave %d of %s", len(instanceIDs), wave, version))
}

const setWaveStateSQL = `
UPDATE rollout_waves SET state = $3, updated_at = now() WHERE version = $1 AND wave = ANY($2::int[])`

// SetWaveState sets the gate of the given waves of version's rollout.
func (s *Store) SetWaveState(ctx context.Context, version string, waves []int, state string) error {
	switch state {
	case workflows.WavePending, workflows.WaveOpen, workflows.WaveHeld, workflows.WaveAborted:
	default:
		return errorf(ErrInvalidRequest, "wave state %q is not one of %s, %s, %s, %s", state, workflows.WavePending, workflows.WaveOpen, workflows.WaveHeld, workflows.WaveAborted)
	}
	_, err := s.db.Exec(ctx, setWaveStateSQL, version, waves, state)
	return mapError(err, fmt.Sprintf("set waves %v of %s %s", waves, version, state))
}

const waveReportSQL = `
SELECT m.wave, w.state, u.status, count(*)::int, min(u.primary_start), max(u.primary_start)
FROM rollout_members m
JOIN rollout_waves w ON w.version = m.version AND w.wave = m.wave
JOIN updates u ON u.workflow_id = m.workflow_id
WHERE m.version = $1
GROUP BY m.wave, w.state, u.status
ORDER BY m.wave`

// WaveReport counts the started updates of each wave of version's
// rollout by status, with the wave's gate and its first and last primary
// slot, as the updates' projection holds them now.
func (s *Store) WaveReport(ctx context.Context, version string) ([]workflows.WaveReport, error) {
	rows, err := s.db.Query(ctx, waveReportSQL, version)
	if err != nil {
		return nil, mapError(err, "report the waves of "+version)
	}
	var report []workflows.WaveReport
	var wave, n int
	var state, status string
	var first, last time.Time
	_, err = pgx.ForEachRow(rows, []any{&wave, &state, &status, &n, &first, &last}, func() error {
		if len(report) == 0 || report[len(report)-1].Wave != wave {
			report = append(report, workflows.WaveReport{Wave: wave, State: state, ByStatus: map[workflows.Status]int{}, FirstStart: first, LastStart: last})
		}
		r := &report[len(report)-1]
		r.ByStatus[workflows.Status(status)] += n
		r.Members += n
		if first.Before(r.FirstStart) {
			r.FirstStart = first
		}
		if last.After(r.LastStart) {
			r.LastStart = last
		}
		return nil
	})
	return report, mapError(err, "report the waves of "+version)
}

const gateSQL = `
SELECT w.state FROM rollout_members m
JOIN rollout_waves w ON w.version = m.version AND w.wave = m.wave
WHERE m.version = $1 AND m.instance_id = $2`

// waveGate is the gate of the wave an instance's update to version is
// in; an update no rollout started is in no wave, and open.
func waveGate(ctx context.Context, db DBTX, version, instanceID string) (string, error) {
	var state string
	err := db.QueryRow(ctx, gateSQL, version, instanceID).Scan(&state)
	if err == pgx.ErrNoRows {
		return workflows.WaveOpen, nil
	}
	return state, mapError(err, fmt.Sprintf("read the wave gate of %q", instanceID))
}

const waveMembersSQL = `SELECT workflow_id FROM rollout_members WHERE version = $1 AND wave = ANY($2::int[]) ORDER BY workflow_id`

// WaveMembers lists the workflow IDs of the updates in the given waves of
// version's rollout.
func (s *Store) WaveMembers(ctx context.Context, version string, waves []int) ([]string, error) {
	rows, err := s.db.Query(ctx, waveMembersSQL, version, waves)
	if err != nil {
		return nil, mapError(err, "list the members of waves of "+version)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, mapError(err, "list the members of waves of "+version)
}

const waitingMembersSQL = `
SELECT m.workflow_id, u.primary_start FROM rollout_members m
JOIN updates u ON u.workflow_id = m.workflow_id
WHERE m.version = $1 AND m.wave = $2 AND u.status = ANY($3::text[])
ORDER BY u.primary_start, m.workflow_id`

// WaitingMember is an update of a rollout's wave still waiting for its
// slot, with its primary start.
type WaitingMember struct {
	WorkflowID   string
	PrimaryStart time.Time
}

// WaitingMembers lists the updates of a wave of version's rollout that
// still wait for their slots (Scheduled or Approved), earliest first:
// those a move of the wave takes to later slots.
func (s *Store) WaitingMembers(ctx context.Context, version string, wave int) ([]WaitingMember, error) {
	waiting := []string{string(workflows.StatusScheduled), string(workflows.StatusApproved)}
	rows, err := s.db.Query(ctx, waitingMembersSQL, version, wave, waiting)
	if err != nil {
		return nil, mapError(err, fmt.Sprintf("list the waiting updates of wave %d of %s", wave, version))
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (WaitingMember, error) {
		var m WaitingMember
		err := row.Scan(&m.WorkflowID, &m.PrimaryStart)
		m.PrimaryStart = m.PrimaryStart.UTC()
		return m, err
	})
	return list, mapError(err, fmt.Sprintf("list the waiting updates of wave %d of %s", wave, version))
}
