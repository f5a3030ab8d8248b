package store_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/svcupdate/svcupdate/internal/fleet"
	"github.com/svcupdate/svcupdate/internal/sourcetest"
	"github.com/svcupdate/svcupdate/internal/store"
	"github.com/svcupdate/svcupdate/internal/store/storetest"
	"github.com/svcupdate/svcupdate/workflows"
)

// A notice's audience: only its roles, admins first, then in the order
// they were added, spelled as stored.
func TestAudienceAddresses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fl := storetest.Fleet(2, 5)
	fl.Instances[0].Admins = nil // recipients added below, at known times
	fl.Instances[0].Users = nil
	s, tx := setup(t, fl)
	added := storetest.PeriodStart
	for _, r := range []struct{ role, email string }{
		{store.RoleExtra, "zed@partner.example"},
		{store.RoleUser, "sam@acme.example"},
		{store.RoleAdmin, "Bea@acme.example"},
		{store.RoleExtra, "amy@partner.example"},
		{store.RoleAdmin, "ada@acme.example"},
	} {
		added = added.Add(time.Minute)
		if _, err := tx.Exec(ctx, `INSERT INTO recipients (instance_id, role, email, created_at) VALUES ('inst-000', $1, $2, $3)`,
			r.role, r.email, added); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		roles []string
		want  []string
	}{
		{[]string{store.RoleAdmin, store.RoleExtra}, []string{"Bea@acme.example", "ada@acme.example", "zed@partner.example", "amy@partner.example"}},
		{[]string{store.RoleAdmin, store.RoleUser}, []string{"Bea@acme.example", "ada@acme.example", "sam@acme.example"}},
	} {
		got, err := s.AudienceAddresses(ctx, "inst-000", tc.roles)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("AudienceAddresses(%v) = %v, want %v", tc.roles, got, tc.want)
		}
	}
	// Recipients lists the same people by address, role by role.
	got, err := s.Recipients(ctx, "inst-000")
	if err != nil {
		t.Fatal(err)
	}
	want := store.InstanceRecipients{CurrentVersion: "9.0.0", Admins: []string{"ada@acme.example", "Bea@acme.example"},
		Users: []string{"sam@acme.example"}, Extra: []string{"amy@partner.example", "zed@partner.example"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Recipients = %+v\nwant %+v", got, want)
	}
}

func TestInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(1, 5))
	got, err := s.Instance(ctx, "inst-000")
	want := workflows.Instance{ID: "inst-000", Name: "Instance 0", TenantID: "acme", Kind: fleet.KindSandbox, Region: "eu-west", TimeZone: "Europe/Berlin"}
	if err != nil || got != want {
		t.Fatalf("Instance = %+v, %v; want %+v", got, err, want)
	}
	_, err = s.Instance(ctx, "ghost")
	wantErr(t, err, store.ErrNotFound, `instance "ghost" does not exist`)
}

// The recipient roles are the store's constants, not their values written
// again, in the store or in the activities that address notices by role.
func TestRolesAreNotRepeated(t *testing.T) {
	t.Parallel()
	roles := []string{store.RoleAdmin, store.RoleUser, store.RoleExtra}
	seen := map[string][]string{}
	for _, dir := range append([]string{"."}, packageDirs(t, filepath.Join("..", "..", "activities"))...) {
		for _, literal := range sourcetest.StringLiterals(t, dir) {
			for _, role := range roles {
				// The value itself, or quoted in SQL.
				if literal.Value == role || strings.Contains(literal.Value, "'"+role+"'") {
					seen[role] = append(seen[role], literal.Position)
				}
			}
		}
	}
	for _, role := range roles {
		if len(seen[role]) != 1 {
			t.Errorf("role %q is written %d times (%s); want once, as a store.Role constant", role, len(seen[role]), strings.Join(seen[role], ", "))
		}
	}
}

// packageDirs lists root and the directories below it that hold non-test
// Go files.
func packageDirs(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		files, err := filepath.Glob(filepath.Join(path, "*.go"))
		for _, f := range files {
			if !strings.HasSuffix(f, "_test.go") {
				dirs = append(dirs, path)
				break
			}
		}
		return err
	})
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no Go packages under %s (%v)", root, err)
	}
	return dirs
}
