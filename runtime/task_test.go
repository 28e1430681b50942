package runtime

import (
	"regexp"
	"strings"
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

// TestValidName checks validName against docker's rule as a regexp, on
// hand-picked names and on every string of up to 3 characters from an
// alphabet with each class of character in it.
func TestValidName(t *testing.T) {
	re := regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	check := func(n string) {
		if got, want := validName(n), re.MatchString(n); got != want {
			t.Errorf("validName(%q) = %v, want %v", n, got, want)
		}
	}
	for _, n := range []string{"", "a", "web-1", "Web_1.x", "-a", "_a", ".a", "a b", "a/b", "é", "a\x00",
		strings.Repeat("a", 128), strings.Repeat("a", 129), "a" + strings.Repeat("-", 127), "0"} {
		check(n)
	}
	alphabet := []string{"a", "Z", "7", "_", ".", "-", " ", "/", "\xff"}
	var walk func(prefix string, depth int)
	walk = func(prefix string, depth int) {
		check(prefix)
		if depth == 3 {
			return
		}
		for _, c := range alphabet {
			walk(prefix+c, depth+1)
		}
	}
	walk("", 0)
}
