package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/svcupdate/svcupdate/internal/config"
	"github.com/svcupdate/svcupdate/internal/store"
)

func newSlotsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slots --version V [--holders=false]",
		Short: "show a release's slots (UTC): capacity, booked, the updates holding them; warn where bookings and open updates disagree",
		Args:  maxArgs(0),
	}
	fs := cmd.Flags()
	version := fs.String("version", "", "the release whose slots are shown (required)")
	holders := fs.Bool("holders", true, "list every reservation with the update holding it; false shows the slots only")
	format := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "version"); err != nil {
			return err
		}
		return runSlots(cmd.Context(), e, *version, *holders, *format)
	}
	return cmd
}

func runSlots(ctx context.Context, e *env, version string, holders bool, format outputFormat) error {
	pool, err := e.postgres(ctx)
	if err != nil {
		return err
	}
	st := store.New(pool)
	slots, err := st.Slots(ctx, version)
	if err != nil {
		return err
	}
	mismatches, err := st.CheckBookings(ctx, version)
	if err != nil {
		return err
	}
	if format == jsonOutput {
		var lines []string
		for _, m := range mismatches {
			lines = append(lines, m.String())
		}
		err = writeJSON(e.stdout, newSlotsJSON(version, slots, lines))
	} else {
		err = renderSlots(e.stdout, slots, holders)
	}
	if err != nil {
		return err
	}
	for _, m := range mismatches {
		fmt.Fprintf(e.stderr, "warning: %s\n", m)
	}
	if len(mismatches) > 0 {
		return fmt.Errorf("slots of %s: %d slot(s) whose booked count differs from the reservations open updates hold (listed above)", version, len(mismatches))
	}
	return nil
}

// renderSlots writes the slots (in UTC), their totals and, with holders,
// every reservation and the update holding it.
func renderSlots(w io.Writer, slots []store.SlotRow, holders bool) error {
	if len(slots) == 0 {
		_, err := fmt.Fprintln(w, "the release offers no slots")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSTART (UTC)\tWINDOW\tCAPACITY\tBOOKED\tFREE")
	capacity, booked := 0, 0
	for _, s := range slots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", s.Region, s.Start.Format(utcLayout), config.FormatDuration(s.Window), s.Capacity, s.Booked, max(s.Capacity-s.Booked, 0))
		capacity += s.Capacity
		booked += s.Booked
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d slot(s): capacity %d, booked %d, free %d\n", len(slots), capacity, booked, max(capacity-booked, 0))
	if !holders || booked == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSTART (UTC)\tROLE\tUPDATE\tSTATUS")
	for _, s := range slots {
		for _, r := range s.Reservations {
			status := string(r.Status)
			switch {
			case status == "":
				status = "no update recorded (not held)"
			case !r.Open():
				status += " (closed: not held)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Region, s.Start.Format(utcLayout), r.Role, r.WorkflowID, status)
		}
	}
	return tw.Flush()
}
