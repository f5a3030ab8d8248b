package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/svcupdate/svcupdate/workflows"
)

func TestUpdateFilterQuery(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name   string
		filter updateFilter
		want   string
	}{
		{"everything", updateFilter{}, "WorkflowType = 'ServiceUpdate'"},
		{"version and status", updateFilter{TargetVersion: "9.2.0", Status: workflows.StatusFailed},
			"WorkflowType = 'ServiceUpdate' AND TargetVersion = '9.2.0' AND UpdateStatus = 'Failed'"},
		{"running update of an instance", updateFilter{InstanceID: "acme-prod", RunningOnly: true},
			"WorkflowType = 'ServiceUpdate' AND InstanceId = 'acme-prod' AND ExecutionStatus = 'Running'"},
		{"mandatory updates of a tenant", updateFilter{TenantID: "acme", Mandatory: &yes},
			"WorkflowType = 'ServiceUpdate' AND TenantId = 'acme' AND Mandatory = true"},
		{"optional updates", updateFilter{Mandatory: &no}, "WorkflowType = 'ServiceUpdate' AND Mandatory = false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.filter.query()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("query = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := (updateFilter{InstanceID: `x' OR InstanceId != '`}).query(); err == nil {
		t.Error("a quote in an instance ID was accepted into the query")
	}
}

func TestParseStatusIgnoresCase(t *testing.T) {
	got, err := parseStatus("notapproved")
	if err != nil || got != workflows.StatusNotApproved {
		t.Fatalf("parseStatus(notapproved) = %q, %v", got, err)
	}
}

// TestSummarizeDecodesSearchAttributes reads the search attributes the way
// visibility returns them: one payload per attribute, by the names in
// workflows/api.go.
func TestSummarizeDecodesSearchAttributes(t *testing.T) {
	scheduled := time.Date(2026, 3, 3, 1, 0, 0, 0, time.UTC)
	payload := func(v any) *commonpb.Payload {
		p, err := converter.GetDefaultDataConverter().ToPayload(v)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	attrs := &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{
		workflows.SearchAttrInstanceID.GetName():     payload("acme-prod"),
		workflows.SearchAttrTenantID.GetName():       payload("acme"),
		workflows.SearchAttrTargetVersion.GetName():  payload("9.2.0"),
		workflows.SearchAttrUpdateStatus.GetName():   payload(string(workflows.StatusApproved)),
		workflows.SearchAttrMandatory.GetName():      payload(true),
		workflows.SearchAttrScheduledStart.GetName(): payload(scheduled),
	}}
	got, err := summarize("service-update:acme-prod:9.2.0", attrs)
	if err != nil {
		t.Fatal(err)
	}
	want := updateSummary{
		WorkflowID: "service-update:acme-prod:9.2.0", InstanceID: "acme-prod", TenantID: "acme", TargetVersion: "9.2.0",
		Status: workflows.StatusApproved, Mandatory: true, ScheduledStart: scheduled,
	}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
}

// renderList writes updates through a updateStream, page after page.
func renderList(t *testing.T, format outputFormat, pages ...[]updateSummary) string {
	t.Helper()
	var out bytes.Buffer
	w := &updateStream{w: &out, format: format}
	for _, page := range pages {
		for _, u := range page {
			if err := w.add(u); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func listFixture() []updateSummary {
	at := func(h int) time.Time { return time.Date(2026, 3, 3, h, 0, 0, 0, time.UTC) }
	return []updateSummary{
		{WorkflowID: "service-update:globex-prod:9.2.0", InstanceID: "globex-prod", TenantID: "globex", TargetVersion: "9.2.0", Status: workflows.StatusSucceeded,
			ScheduledStart: at(5), Execution: enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, Started: at(0), Closed: at(6)},
		{WorkflowID: "service-update:acme-prod:9.2.0", InstanceID: "acme-prod", TenantID: "acme", TargetVersion: "9.2.0", Status: workflows.StatusScheduled,
			Mandatory: true, ScheduledStart: at(1), Execution: enums.WORKFLOW_EXECUTION_STATUS_RUNNING, Started: at(0)},
		{WorkflowID: "service-update:acme-test:9.2.0", InstanceID: "acme-test", TenantID: "acme", TargetVersion: "9.2.0", Status: workflows.StatusSucceeded,
			ScheduledStart: at(3), Execution: enums.WORKFLOW_EXECUTION_STATUS_COMPLETED, Started: at(0), Closed: at(4)},
		{WorkflowID: "service-update:initech-prod:9.2.0", InstanceID: "initech-prod", TenantID: "initech", TargetVersion: "9.2.0",
			Execution: enums.WORKFLOW_EXECUTION_STATUS_TERMINATED, Started: at(0), Closed: at(0)},
	}
}

func TestRenderList(t *testing.T) {
	updates := listFixture()
	text := renderList(t, textOutput, updates[:2], updates[2:])
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 7 {
		t.Fatalf("got %d lines, want header, 4 rows, blank, counts:\n%s", len(lines), text)
	}
	if fields := strings.Fields(lines[0]); fields[0] != "INSTANCE" || fields[3] != "STATUS" {
		t.Errorf("header = %q", lines[0])
	}
	// Streamed: rows in the order visibility returns them.
	for i, want := range []string{"globex-prod", "acme-prod", "acme-test", "initech-prod"} {
		if got := strings.Fields(lines[i+1])[0]; got != want {
			t.Errorf("row %d = %s, want %s", i+1, got, want)
		}
	}
	wantRow := []string{"acme-prod", "acme", "9.2.0", "Scheduled", "yes", "2026-03-03", "01:00", "UTC", "Running"}
	if got := strings.Fields(lines[2]); strings.Join(got, " ") != strings.Join(wantRow, " ") {
		t.Errorf("acme-prod row = %q, want %q", got, wantRow)
	}
	if want := "4 updates: Scheduled 1, Succeeded 2, unknown 1"; lines[6] != want {
		t.Errorf("counts = %q, want %q", lines[6], want)
	}
}

func TestRenderListEmpty(t *testing.T) {
	if out := renderList(t, textOutput); out != "no updates match\n" {
		t.Errorf("output = %q", out)
	}
	if out := renderList(t, jsonOutput); out != "" {
		t.Errorf("JSON output = %q, want nothing", out)
	}
}
