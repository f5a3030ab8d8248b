package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/internal/cli"
	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/store"
)

func newLoadCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "load FILE",
		Short: "load (upsert) a fleet file: releases, slots, tenants, instances, recipients",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cli.Usagef("load: name the fleet file: starter load FILE")
			}
			return maxArgs(1)(cmd, args)
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return []string{"json"}, cobra.ShellCompDirectiveFilterFileExt
		},
	}
	format := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return runLoad(cmd.Context(), e, args[0], *format) }
	return cmd
}

func runLoad(ctx context.Context, e *env, path string, format outputFormat) error {
	fl, err := fleet.ParseFile(path)
	if err != nil {
		return fleetRefused(e, path, err)
	}
	return applyFleet(ctx, e, fl, format)
}

// fleetRefused prints every problem of a refused fleet file, one a line
// (the error's own message stops after the first fifty).
func fleetRefused(e *env, path string, err error) error {
	var invalid *fleet.ValidationError
	if !errors.As(err, &invalid) {
		return fmt.Errorf("%w; nothing was loaded", err)
	}
	for _, p := range invalid.Problems {
		fmt.Fprintf(e.stderr, "%s: %s\n", path, p)
	}
	return fmt.Errorf("fleet file %s refused: %d problem(s) listed above; nothing was loaded", path, len(invalid.Problems))
}

// applyFleet upserts a parsed fleet and tells the running workflows of every
// instance whose admins changed.
func applyFleet(ctx context.Context, e *env, fl *fleet.Fleet, format outputFormat) error {
	pool, err := e.postgres(ctx)
	if err != nil {
		return err
	}
	report, err := store.New(pool).UpsertFleet(ctx, fl)
	if err != nil {
		return fmt.Errorf("load fleet (nothing was written): %w", err)
	}
	if format == jsonOutput {
		if err := writeJSON(e.stdout, newLoadJSON(report)); err != nil {
			return err
		}
	} else {
		writeLoadReport(e.stdout, report)
	}
	if len(report.AdminChanges) == 0 {
		return nil
	}
	changed := make([]string, len(report.AdminChanges))
	for i, change := range report.AdminChanges {
		changed[i] = change.InstanceID
	}
	slices.Sort(changed)
	// A second load sees no change in Postgres and sends nothing, so every
	// failure names sync-admins, which sends what Postgres holds.
	c, err := e.temporal(ctx)
	if err != nil {
		return fmt.Errorf("the fleet is loaded, but the running updates of %d instance(s) with new admins were not told (%w); tell them with: %s",
			len(changed), err, adminSyncCommand(changed))
	}
	lines := e.stdout
	if format == jsonOutput {
		lines = e.stderr // stdout holds the JSON document only
	}
	result, err := syncAdmins(ctx, e, store.New(pool), c, changed, adminSyncConcurrency, lines)
	if err != nil {
		return fmt.Errorf("the fleet is loaded, but %w; tell them with: %s", err, adminSyncCommand(changed))
	}
	if failed := result.failedInstances(); len(failed) > 0 || ctx.Err() != nil {
		result.write(e.stderr)
		if ctx.Err() != nil {
			failed = changed // which ones were reached is not worth sorting out
		}
		return fmt.Errorf("the fleet is loaded, but %d instance(s) kept their old admins in running updates (listed above); retry with: %s",
			len(failed), adminSyncCommand(failed))
	}
	return nil
}

// adminSyncConcurrency bounds the instances a load tells of new admins at once.
const adminSyncConcurrency = 16

// writeLoadReport prints what a load changed, one line per kind of row.
func writeLoadReport(w io.Writer, r store.FleetLoadReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "loaded\tinserted\tupdated\tunchanged")
	for _, row := range []struct {
		what   string
		counts store.FleetLoadCounts
	}{
		{"releases", r.Releases}, {"slots", r.Slots}, {"tenants", r.Tenants}, {"instances", r.Instances},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", row.what, row.counts.Inserted, row.counts.Updated, row.counts.Unchanged)
	}
	tw.Flush()
	fmt.Fprintf(w, "recipients: %d added, %d removed; admins changed on %d instance(s)\n",
		r.RecipientsAdded, r.RecipientsRemoved, len(r.AdminChanges))
	for _, k := range r.KeptVersions {
		fmt.Fprintf(w, "%s: kept version %s (the file says %s; a completed update recorded the newer one)\n",
			k.InstanceID, k.CurrentVersion, k.FileVersion)
	}
}
