package workflows

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// Reservations are given back as soon as they can no longer be used:
// every close releases whatever the update still holds (the secondary
// after a primary success, both slots after a failure), so a finished
// update never keeps capacity from other instances.
func TestEveryCloseGivesReservationsBack(t *testing.T) {
	failIn := func(roles ...SlotRole) func(context.Context, ApplyUpdateInput) error {
		return func(_ context.Context, in ApplyUpdateInput) error {
			for _, role := range roles {
				if in.Attempt == role {
					return temporal.NewNonRetryableApplicationError("migration failed", ErrTypeUpdateFailed, nil)
				}
			}
			return nil
		}
	}
	tests := []struct {
		name      string
		mandatory bool
		executor  func(context.Context, ApplyUpdateInput) error
		want      Status
		// releases counts every release; the last one is the close's.
		releases int
	}{
		{name: "succeeded in the primary slot", mandatory: true, want: StatusSucceeded, releases: 1},
		{name: "succeeded in the secondary slot", mandatory: true, executor: failIn(SlotPrimary), want: StatusSucceeded, releases: 1},
		{name: "failed in both", mandatory: true, executor: failIn(SlotPrimary, SlotSecondary), want: StatusFailed, releases: 1},
		{name: "not approved", want: StatusNotApproved, releases: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScenario(t)
			s.in.Mandatory = tt.mandatory
			s.fakes.applyUpdate = tt.executor

			res, err := s.run()
			require.NoError(t, err)
			assert.Equal(t, tt.want, res.Status)
			require.Len(t, s.fakes.releases, tt.releases)
			assert.Equal(t, ReleaseSlotsInput{InstanceID: "inst-1", OfferedVersion: "9.2.0"}, s.fakes.releases[tt.releases-1])
			assert.Greater(t, s.fakes.lastCall(ActivityReleaseSlots), s.fakes.lastCall(ActivityApplyUpdate), "released after the last attempt")
			assert.Greater(t, s.fakes.lastCall(ActivityReleaseSlots), s.fakes.lastCall(ActivityBookSlots))
		})
	}
}
