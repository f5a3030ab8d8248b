package store_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/svcupdate/svcupdate/internal/store/storetest"
)

func TestNamesForCompletion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := setup(t, storetest.Fleet(12, 5))
	ids, err := s.InstanceIDs(ctx, "inst-01", 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"inst-010", "inst-011"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("InstanceIDs(inst-01) = %v, want %v", ids, want)
	}
	if ids, err := s.InstanceIDs(ctx, "", 3); err != nil || len(ids) != 3 || ids[0] != "inst-000" {
		t.Errorf("InstanceIDs limited to 3 = %v, %v", ids, err)
	}
	versions, err := s.ReleaseVersions(ctx, "9.", 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"9.3.0", "9.2.0", "9.1.0", "9.0.0"}; !reflect.DeepEqual(versions, want) {
		t.Errorf("ReleaseVersions = %v, want newest first %v", versions, want)
	}
}
