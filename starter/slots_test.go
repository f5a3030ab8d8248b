package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/starter/internal/demo"
	"github.com/svcupdate/svcupdate/workflows"
)

// TestSlotsShowsReservationsAndWarnsOnMismatch books two demo updates and
// shows the release's slots with the updates holding them; once an update
// has closed without giving its places back, the same command warns and
// exits non-zero.
func TestSlotsShowsReservationsAndWarnsOnMismatch(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	t.Setenv("DATABASE_URL", dbURL)
	run := demo.NewRun("sl", time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC))
	data, err := run.FleetFile()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "fleet.json")
	writeFile(t, path, string(data))
	mustRun(t, "load", path)

	ctx := context.Background()
	st := store.New(openTestPool(t, dbURL))
	booked := []string{run.InstanceID("contoso-prod"), run.InstanceID("contoso-sandbox")}
	for _, id := range booked {
		if _, err := st.BookRolloutSlots(ctx, store.BookRolloutSlotsParams{InstanceID: id, Version: demo.Version, SecondaryMinGap: demo.SecondaryGap, Now: run.Slot(0).Add(-time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	out := mustRun(t, "slots", "--version", demo.Version)
	for _, want := range []string{
		"REGION  START (UTC)           WINDOW  CAPACITY  BOOKED  FREE\n",
		"emea    2027-03-01 10:02 UTC  45s     10        2       8\n",
		"emea    2027-03-01 10:04 UTC  45s     10        0       10\n",
		"9 slot(s): capacity 90, booked 4, free 86\n",
		"emea    2027-03-01 10:02 UTC  primary    " + workflows.WorkflowID(booked[0], demo.Version) + "     Scheduled\n",
		"emea    2027-03-01 10:03 UTC  secondary  " + workflows.WorkflowID(booked[1], demo.Version) + "  Scheduled\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("slots lacks %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, "slots", "--version", demo.Version, "--holders=false"); strings.Contains(out, "primary") {
		t.Errorf("--holders=false lists reservations:\n%s", out)
	}

	// The sandbox update closed without releasing its slots.
	if _, err := st.RecordTransition(ctx, "closed/1", workflows.RecordTransitionInput{
		Actor: workflows.ActorSystem, Channel: workflows.ChannelWorkflow, Action: "succeeded", From: workflows.StatusInProgress,
		Snapshot: workflows.StatusView{
			WorkflowID: workflows.WorkflowID(booked[1], demo.Version), InstanceID: booked[1], CurrentVersion: "9.1.0",
			OfferedVersion: demo.Version, TargetVersion: demo.Version, Status: workflows.StatusSucceeded,
			Primary: workflows.Window{Start: run.Slot(0)}, Secondary: workflows.Window{Start: run.Slot(2)},
		},
	}); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runStarter(t, "slots", "--version", demo.Version)
	if err == nil || !strings.Contains(err.Error(), "2 slot(s) whose booked count differs from the reservations open updates hold") {
		t.Errorf("slots with a leaked reservation: %v", err)
	}
	wantWarning := "warning: the 9.2.0 slot in emea at 2027-03-01 10:02 UTC: booked 2, but open updates hold 1 reservation(s); held by no open update: " +
		workflows.WorkflowID(booked[1], demo.Version) + " (Succeeded)\n"
	if !strings.Contains(errOut, wantWarning) {
		t.Errorf("stderr lacks %q:\n%s", wantWarning, errOut)
	}
	if !strings.Contains(out, "Succeeded (closed: not held)") {
		t.Errorf("the leaked reservation is not marked:\n%s", out)
	}
	if _, _, err := runStarter(t, "slots", "--version", "8.0.0"); err == nil || !strings.Contains(err.Error(), `release "8.0.0" does not exist`) {
		t.Errorf("slots of an unknown release: %v", err)
	}
}
