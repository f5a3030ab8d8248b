package demo

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/enums/v1"

	"github.com/svcupdate/svcupdate/workflows"
)

// Row is one workflow's line in the live table.
type Row struct {
	View      workflows.StatusView
	Execution enums.WorkflowExecutionStatus
}

// RenderTable writes the live table: one line per update with its status,
// windows in the instance's zone, attempts and the latest notice.
func RenderTable(w io.Writer, rows []Row, now time.Time) {
	fmt.Fprintf(w, "svcupdate demo — %s UTC — Ctrl-C stops it — Web UI %s\n\n", now.UTC().Format(time.TimeOnly), WebUI)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tVERSION\tMANDATORY\tSTATUS\tPRIMARY (LOCAL)\tSECONDARY (LOCAL)\tATTEMPTS\tLATEST NOTICE")
	for _, r := range rows {
		v := r.View
		mandatory := "no"
		if v.Mandatory {
			mandatory = "yes"
		}
		var attempts []string
		for _, a := range v.Attempts {
			attempts = append(attempts, fmt.Sprintf("%s:%s", a.Slot, cmp.Or(a.Outcome, "running")))
		}
		notice := "-"
		if n := len(v.Notices); n > 0 {
			notice = fmt.Sprintf("%s (%d sent)", v.Notices[n-1].Kind, n)
		}
		fmt.Fprintf(tw, "%s\t%s → %s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.InstanceID, v.CurrentVersion, v.TargetVersion, mandatory,
			v.Status, v.Primary.LocalStart, v.Secondary.LocalStart, cmp.Or(strings.Join(attempts, ", "), "-"), notice)
	}
	tw.Flush()
}
