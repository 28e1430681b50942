package runtime

import (
	"testing"
	"time"
)

func TestStopTimeout(t *testing.T) {
	for _, tc := range []struct {
		ctrs []time.Duration
		want time.Duration
	}{
		{nil, DefaultStopTimeout},
		{[]time.Duration{0}, DefaultStopTimeout},
		{[]time.Duration{time.Second}, time.Second},
		{[]time.Duration{time.Second, 30 * time.Second, 0}, 30 * time.Second},
	} {
		task := &Task{}
		for _, d := range tc.ctrs {
			task.Containers = append(task.Containers, &Container{StopTimeout: d})
		}
		if got := task.stopTimeout(); got != tc.want {
			t.Errorf("containers %v: stop timeout %v, want %v", tc.ctrs, got, tc.want)
		}
	}
}
