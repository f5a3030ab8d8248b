package schemas_test

import (
	"context"
	"testing"

	"github.com/svcupdate/svcupdate/internal/pgtest"
	"github.com/svcupdate/svcupdate/schemas"
)

func TestMigrateTwiceIsNoOp(t *testing.T) {
	dbURL := pgtest.NewDatabase(t) // applies every migration once
	applied, err := schemas.Migrate(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(applied) != 0 {
		t.Fatalf("second migrate applied %v, want nothing", applied)
	}
}
