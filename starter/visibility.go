package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/workflows"
)

// updateFilter selects updates in Temporal visibility. Empty fields match
// everything.
type updateFilter struct {
	InstanceID    string
	TenantID      string
	TargetVersion string
	Status        workflows.Status
	Mandatory     *bool // nil: either
	RunningOnly   bool
}

// query renders the filter as a visibility query over the search
// attributes of workflows/api.go.
func (f updateFilter) query() (string, error) {
	clauses := []string{fmt.Sprintf("WorkflowType = '%s'", workflows.WorkflowType)}
	for _, c := range []struct {
		key   temporal.SearchAttributeKeyKeyword
		flag  string
		value string
	}{
		{workflows.SearchAttrInstanceID, "instance", f.InstanceID},
		{workflows.SearchAttrTenantID, "tenant", f.TenantID},
		{workflows.SearchAttrTargetVersion, "version", f.TargetVersion},
		{workflows.SearchAttrUpdateStatus, "status", string(f.Status)},
	} {
		if c.value == "" {
			continue
		}
		if strings.ContainsAny(c.value, `'"\`) {
			return "", cli.Usagef("--%s %s: quotes and backslashes are not allowed", c.flag, c.value)
		}
		clauses = append(clauses, fmt.Sprintf("%s = '%s'", c.key.GetName(), c.value))
	}
	if f.Mandatory != nil {
		clauses = append(clauses, fmt.Sprintf("%s = %t", workflows.SearchAttrMandatory.GetName(), *f.Mandatory))
	}
	if f.RunningOnly {
		clauses = append(clauses, "ExecutionStatus = 'Running'")
	}
	return strings.Join(clauses, " AND "), nil
}

// updateSummary is one ServiceUpdate execution as visibility shows it.
type updateSummary struct {
	WorkflowID     string
	InstanceID     string
	TenantID       string
	TargetVersion  string
	Status         workflows.Status // the UpdateStatus search attribute
	Mandatory      bool
	ScheduledStart time.Time
	Execution      enums.WorkflowExecutionStatus
	Started        time.Time
	Closed         time.Time
}

// listUpdates returns every execution the filter selects.
func listUpdates(ctx context.Context, c client.Client, namespace string, f updateFilter) ([]updateSummary, error) {
	var updates []updateSummary
	err := eachUpdate(ctx, c, namespace, f, 0, func(u updateSummary) error {
		updates = append(updates, u)
		return nil
	}, func() error { return nil })
	return updates, err
}

// eachUpdate calls row for every execution the filter selects, at most
// limit of them (0: all), as visibility pages them in (newest first), and
// page after each page.
func eachUpdate(ctx context.Context, c client.Client, namespace string, f updateFilter, limit int, row func(updateSummary) error, page func() error) error {
	query, err := f.query()
	if err != nil {
		return err
	}
	pageSize, seen := int32(1000), 0
	if limit > 0 && limit < int(pageSize) {
		pageSize = int32(limit)
	}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace:     namespace,
			Query:         query,
			PageSize:      pageSize,
			NextPageToken: token,
		})
		if err != nil {
			return fmt.Errorf("list workflows (%s): %w", query, err)
		}
		for _, info := range resp.GetExecutions() {
			u, err := summarize(info.GetExecution().GetWorkflowId(), info.GetSearchAttributes())
			if err != nil {
				return err
			}
			u.Execution = info.GetStatus()
			u.Started = info.GetStartTime().AsTime()
			if info.GetCloseTime() != nil {
				u.Closed = info.GetCloseTime().AsTime()
			}
			if err := row(u); err != nil {
				return err
			}
			if seen++; limit > 0 && seen >= limit {
				return page()
			}
		}
		if err := page(); err != nil {
			return err
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return nil
		}
	}
}

// summarize decodes the search attributes of one execution.
func summarize(workflowID string, attrs *commonpb.SearchAttributes) (updateSummary, error) {
	u := updateSummary{WorkflowID: workflowID}
	var status string
	fields := attrs.GetIndexedFields()
	for _, d := range []struct {
		key temporal.SearchAttributeKey
		dst any
	}{
		{workflows.SearchAttrInstanceID, &u.InstanceID},
		{workflows.SearchAttrTenantID, &u.TenantID},
		{workflows.SearchAttrTargetVersion, &u.TargetVersion},
		{workflows.SearchAttrUpdateStatus, &status},
		{workflows.SearchAttrMandatory, &u.Mandatory},
		{workflows.SearchAttrScheduledStart, &u.ScheduledStart},
	} {
		payload, ok := fields[d.key.GetName()]
		if !ok {
			continue
		}
		if err := converter.GetDefaultDataConverter().FromPayload(payload, d.dst); err != nil {
			return updateSummary{}, fmt.Errorf("workflow %s: search attribute %s: %w", workflowID, d.key.GetName(), err)
		}
	}
	u.Status = workflows.Status(status)
	return u, nil
}

// updateWorkflowID names the update of instance to act on: the one of
// version when given, else the instance's only running update.
func updateWorkflowID(ctx context.Context, e *env, c client.Client, instance, version string) (string, error) {
	if version != "" {
		return workflows.WorkflowID(instance, version), nil
	}
	running, err := listUpdates(ctx, c, e.cfg.TemporalNamespace, updateFilter{InstanceID: instance, RunningOnly: true})
	if err != nil {
		return "", err
	}
	switch len(running) {
	case 0:
		return "", fmt.Errorf("instance %s has no running update (pass --version to name a closed one; starter list shows them all)", instance)
	case 1:
		return running[0].WorkflowID, nil
	}
	ids := make([]string, len(running))
	for i, u := range running {
		ids[i] = u.WorkflowID
	}
	return "", fmt.Errorf("instance %s has %d running updates (%s): pass --version", instance, len(running), strings.Join(ids, ", "))
}

// updateTargetFlags defines the flags that name the update a subcommand
// acts on: --instance (the subcommand requires it) and --version.
func updateTargetFlags(cmd *cobra.Command) (instance, version *string) {
	instance = cmd.Flags().String("instance", "", "instance ID (required)")
	version = cmd.Flags().String("version", "", "version the update was started for (default: the instance's running update)")
	return instance, version
}

// connectToUpdate connects to Temporal and names the workflow of the
// update that instance and version point at (see updateWorkflowID).
func connectToUpdate(ctx context.Context, e *env, instance, version string) (client.Client, string, error) {
	c, err := e.temporal(ctx)
	if err != nil {
		return nil, "", err
	}
	id, err := updateWorkflowID(ctx, e, c, instance, version)
	if err != nil {
		return nil, "", err
	}
	return c, id, nil
}
