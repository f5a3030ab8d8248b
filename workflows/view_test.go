package workflows

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkpb "go.temporal.io/api/sdk/v1"

	"github.com/svcupdate/svcupdate/internal/actor"
)

func TestSummaryLine(t *testing.T) {
	start := time.Date(2026, 3, 3, 1, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		zone      string
		mandatory bool
		want      string
	}{
		{"optional in the instance's zone", "Europe/Berlin", false, "contoso-prod: 9.1.0 → 9.2.0, needs approval, primary Tue 3 Mar 2026 02:00 CET"},
		{"mandatory", "America/New_York", true, "contoso-prod: 9.1.0 → 9.2.0, mandatory, primary Mon 2 Mar 2026 20:00 EST"},
		{"unknown zone in UTC", "Mars/Olympus", false, "contoso-prod: 9.1.0 → 9.2.0, needs approval, primary Tue 3 Mar 2026 01:00 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			instance := Instance{ID: "contoso-prod", TimeZone: tt.zone}
			if got := SummaryLine(instance, "9.1.0", "9.2.0", tt.mandatory, start); got != tt.want {
				t.Errorf("SummaryLine = %q, want %q", got, tt.want)
			}
			if got, want := Summary(instance, "9.1.0", "9.2.0", tt.mandatory), tt.want[:strings.Index(tt.want, ", primary ")]; got != want {
				t.Errorf("Summary = %q, want %q: no schedule, which a Reschedule changes", got, want)
			}
		})
	}
}

// queryWorkflowMetadata is the SDK's built-in query behind the Web UI's
// current details (internal.QueryTypeWorkflowMetadata, not exported).
const queryWorkflowMetadata = "__temporal_workflow_metadata"

func TestCurrentDetailsLeadWithTheSummaryLine(t *testing.T) {
	s := newScenario(t)
	var details string
	s.at(scenarioStart.Add(days(5)), func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	s.at(primaryStart.Add(-days(1)), func() {
		value, err := s.env.QueryWorkflow(queryWorkflowMetadata)
		require.NoError(t, err)
		var metadata sdkpb.WorkflowMetadata
		require.NoError(t, value.Get(&metadata))
		details = metadata.GetCurrentDetails()
	})

	_, err := s.run()
	require.NoError(t, err)

	assert.Equal(t, "Approved — inst-1: 9.1.0 → 9.2.0, needs approval, primary Wed 15 Apr 2026 03:00 CEST"+
		" (2026-04-15T01:00:00Z UTC), secondary Wed 22 Apr 2026 03:00 CEST; approved by A***@Acme.example", details, "the approver masked, as in the Status query")
}

// The Status view keeps every approval and reschedule (who, when, how,
// what), not only the last, which a later one would overwrite.
func TestStatusKeepsEveryApproval(t *testing.T) {
	s := newScenario(t)
	approveAt, rescheduleAt := scenarioStart.Add(days(5)), scenarioStart.Add(days(20))
	newPrimary := scenarioStart.Add(days(40))
	s.at(approveAt, func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped, Note: "fine by us"}) })
	s.at(rescheduleAt, func() {
		s.update(UpdateReschedule, RescheduleInput{Admin: "OPS@acme.example", PrimaryStart: newPrimary, SecondaryStart: newPrimary.Add(days(3))})
	})

	_, err := s.run()
	require.NoError(t, err)

	want := []Approval{
		{By: adminListed, At: approveAt, Action: actionApproved, Channel: string(actor.ChannelPortalSession), Detail: "fine by us"},
		{By: "ops@acme.example", At: rescheduleAt, Action: actionRescheduled, Channel: string(actor.ChannelPortalSession),
			Detail: "primary 2026-02-14T01:00:00Z, secondary 2026-02-17T01:00:00Z, target 9.2.0"},
	}
	assert.Equal(t, want, s.fakes.lastTransition().Snapshot.Approvals, "the projection's snapshot keeps them")
	final := s.status()
	masked := slices.Clone(want)
	masked[0].By, masked[1].By = "A***@Acme.example", "o***@acme.example"
	assert.Equal(t, masked, final.Approvals, "the Status query masks who approved")
	assert.Equal(t, "o***@acme.example", final.ApprovedBy, "the last approval")
}

// Anyone who may query a workflow reads its Status: the admins' addresses
// are not in it, only how many there are; the projection Postgres keeps
// for operators (and the activities) has them.
func TestStatusQueryHidesAdminAddresses(t *testing.T) {
	s := newScenario(t)
	var queried StatusView
	s.at(scenarioStart.Add(days(5)), func() { s.update(UpdateApprove, ApproveInput{Admin: adminTyped}) })
	s.at(scenarioStart.Add(days(6)), func() { queried = s.status() })
	_, err := s.run()
	require.NoError(t, err)
	assert.Nil(t, queried.Admins)
	assert.Equal(t, 2, queried.AdminCount)
	raw, err := json.Marshal(queried)
	require.NoError(t, err)
	for _, address := range s.in.Admins {
		assert.NotContains(t, strings.ToLower(string(raw)), strings.ToLower(address))
	}
	assert.Equal(t, s.in.Admins, s.fakes.lastTransition().Snapshot.Admins)
}

func TestMaskEmail(t *testing.T) {
	for address, want := range map[string]string{
		"ana@contoso.example":  "a***@contoso.example",
		"Ölaf@xn--e1a.example": "Ö***@xn--e1a.example",
		"no-address":           "n***",
		"":                     "",
	} {
		assert.Equal(t, want, MaskEmail(address), address)
	}
}
