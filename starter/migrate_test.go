package main

import (
	"strings"
	"testing"

	"github.com/svcupdate/svcupdate/internal/pgtest"
)

// TestMigrateCreatesTheDatabase runs what `make run` runs on a fresh
// machine twice: the first creates and migrates the database, the second
// finds both done.
func TestMigrateCreatesTheDatabase(t *testing.T) {
	name, databaseURL := pgtest.UncreatedDatabase(t)
	t.Setenv("DATABASE_URL", databaseURL)

	out := mustRun(t, "migrate", "--create-database")
	if !strings.Contains(out, "created database "+name+"\n") || !strings.Contains(out, "applied migration 1 (") {
		t.Errorf("first migrate:\n%s", out)
	}
	if out := mustRun(t, "migrate", "--create-database"); out != "schema up to date\n" {
		t.Errorf("second migrate: %q, want only %q", out, "schema up to date\n")
	}
}

func TestMigrateNamesAnUnreachableServer(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://postgres@127.0.0.1:1/svcupdate?sslmode=disable")
	t.Setenv("CONNECT_TIMEOUT", "1s")
	_, errOut, err := runStarter(t, "migrate")
	if err == nil || !strings.Contains(err.Error(), "did not answer within 1s (CONNECT_TIMEOUT)") {
		t.Fatalf("error = %v, want it to say how long it waited for Postgres", err)
	}
	if !strings.Contains(errOut, "waiting up to 1s (CONNECT_TIMEOUT) for Postgres") {
		t.Errorf("stderr = %q, want the wait announced", errOut)
	}
}
