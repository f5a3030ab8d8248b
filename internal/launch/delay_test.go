package launch

import (
	"testing"
	"time"
)

func TestFirstTaskDelay(t *testing.T) {
	now := time.Date(2027, 1, 4, 8, 0, 0, 0, time.UTC)
	primary := now.Add(30 * 24 * time.Hour)
	for _, c := range []struct {
		name         string
		firstTasksAt time.Time
		primary      time.Time
		want         time.Duration
	}{
		{"not deferred", time.Time{}, primary, 0},
		{"until the rollout's starts are done", now.Add(3 * time.Minute), primary, 3 * time.Minute},
		{"never past an hour before the primary", now.Add(48 * time.Hour), now.Add(5 * time.Hour), 4 * time.Hour},
		{"a primary within the hour runs at once", now.Add(3 * time.Minute), now.Add(30 * time.Minute), 0},
		{"a time already past runs at once", now.Add(-time.Minute), primary, 0},
	} {
		if got := firstTaskDelay(c.firstTasksAt, c.primary, now); got != c.want {
			t.Errorf("%s: delay %v, want %v", c.name, got, c.want)
		}
	}
}
