package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"

	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/workflows"
)

// -update rewrites the golden files from what the code prints now; review
// the diff before committing it.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/help and testdata/json")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./starter -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code prints (go test ./starter -run %s -update rewrites it):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}

// everyCommand lists the command tree, root first, depth first.
func everyCommand(root *cobra.Command) []*cobra.Command {
	cmds := []*cobra.Command{root}
	for _, c := range root.Commands() {
		cmds = append(cmds, everyCommand(c)...)
	}
	return cmds
}

// helpFile names the golden help file of a command: "starter-list.txt".
func helpFile(c *cobra.Command) string {
	return "help/" + strings.ReplaceAll(c.CommandPath(), " ", "-") + ".txt"
}

func TestHelpGolden(t *testing.T) {
	for _, c := range everyCommand(newRootCmd(&env{})) {
		args := append(strings.Fields(c.CommandPath())[1:], "-h")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, _, err := runStarter(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			// The variables' table has its own test; kept out, a new
			// variable does not rewrite this file.
			out, _, _ = strings.Cut(out, "Usage of starter: configured by environment variables only.")
			golden(t, helpFile(c), []byte(out))
		})
	}
}

// goldenJSON compares the JSON a read command prints for a fixture.
func goldenJSON(t *testing.T, name string, write func(*bytes.Buffer) error) {
	t.Helper()
	var out bytes.Buffer
	if err := write(&out); err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(line, "{") && strings.HasSuffix(line, "}") && !json.Valid([]byte(line)) {
			t.Errorf("%s: line is not JSON: %s", name, line)
		}
	}
	golden(t, "json/"+name, out.Bytes())
}

func TestJSONGolden(t *testing.T) {
	t.Run("status", func(t *testing.T) {
		goldenJSON(t, "status.json", func(out *bytes.Buffer) error {
			return writeJSON(out, viewJSON{StatusView: statusFixture(t), Execution: executionName(enums.WORKFLOW_EXECUTION_STATUS_RUNNING)})
		})
	})
	t.Run("list", func(t *testing.T) {
		goldenJSON(t, "list.jsonl", func(out *bytes.Buffer) error {
			_, err := out.WriteString(renderList(t, jsonOutput, listFixture()))
			return err
		})
	})
	t.Run("list --count", func(t *testing.T) {
		goldenJSON(t, "list-count.json", func(out *bytes.Buffer) error {
			doc := countJSON{Total: 4, Statuses: map[string]int64{"unknown": 1}}
			for _, s := range workflows.AllStatuses {
				doc.Statuses[string(s)] = 0
			}
			doc.Statuses[string(workflows.StatusScheduled)] = 1
			doc.Statuses[string(workflows.StatusSucceeded)] = 2
			return writeJSON(out, doc)
		})
	})
	t.Run("slots", func(t *testing.T) {
		goldenJSON(t, "slots.json", func(out *bytes.Buffer) error {
			start := time.Date(2027, 3, 6, 2, 0, 0, 0, time.UTC)
			slots := []store.SlotRow{
				{Region: "emea", Start: start, Window: 12 * time.Hour, Capacity: 2, Booked: 2, Reservations: []store.Reservation{
					{WorkflowID: "service-update:acme-prod:9.2.0", Role: workflows.SlotPrimary, Status: workflows.StatusApproved},
					{WorkflowID: "service-update:acme-test:9.2.0", Role: workflows.SlotPrimary, Status: workflows.StatusSucceeded},
				}},
				{Region: "emea", Start: start.Add(7 * 24 * time.Hour), Window: 12 * time.Hour, Capacity: 5},
			}
			return writeJSON(out, newSlotsJSON("9.2.0", slots, []string{"emea 2027-03-06 02:00 UTC: booked 2, open reservations 1"}))
		})
	})
	t.Run("load", func(t *testing.T) {
		goldenJSON(t, "load.json", func(out *bytes.Buffer) error {
			return writeJSON(out, newLoadJSON(store.FleetLoadReport{
				Releases: store.FleetLoadCounts{Unchanged: 2, Inserted: 1}, Slots: store.FleetLoadCounts{Inserted: 6},
				Tenants: store.FleetLoadCounts{Updated: 1}, Instances: store.FleetLoadCounts{Inserted: 3, Unchanged: 1},
				RecipientsAdded: 9, RecipientsRemoved: 1,
				AdminChanges: []store.AdminChange{{InstanceID: "acme-prod", Admins: []string{"ana@acme.example"}}},
				KeptVersions: []store.FleetKeptVersion{{InstanceID: "globex-prod", FileVersion: "9.0.0", CurrentVersion: "9.1.0"}},
			}))
		})
	})
	t.Run("rollout --dry-run", func(t *testing.T) {
		goldenJSON(t, "rollout-dry-run.json", func(out *bytes.Buffer) error {
			summary := &outcomeSummary{}
			summary.add(candidateResult{InstanceID: "acme-test", Outcome: outcomePlanned, Detail: "sandbox Acme Test in emea, 9.1.0 → 9.2.0, optional"})
			summary.add(candidateResult{InstanceID: "acme-prod", Outcome: outcomeNotEligible, Detail: "runs 9.2.0"})
			summary.add(held(candidateResult{InstanceID: "globex-prod"}, store.Holder{
				WorkflowID: "service-update:globex-prod:9.1.0", OfferedVersion: "9.1.0", TargetVersion: "9.1.0", Status: workflows.StatusInProgress,
			}))
			return writeJSON(out, summary.document("9.2.0", true))
		})
	})
}
