package distro_test

import (
	"fmt"
	"regexp"

	"github.com/kvmmanager/guest-agent/build/distro"
)

// volatile matches the parts of a log line that change between repeats of
// the same message (timestamps, pids, durations, counters).
var volatile = regexp.MustCompile(`time=\S+|\[\d+\]|\d+(\.\d+)?(ms|s|µs)?`)

// calmLog fails when the same message (up to timestamps and numbers) was
// logged twice within minGap seconds: the sign of a retry or restart loop.
func calmLog(es []distro.JournalEntry, minGap float64) error {
	last := map[string]float64{}
	for _, e := range es {
		k := volatile.ReplaceAllString(e.Message, "#")
		if t, ok := last[k]; ok && e.Time-t < minGap {
			return fmt.Errorf("%q logged again after %.1f s (less than %.0f s)", e.Message, e.Time-t, minGap)
		}
		last[k] = e.Time
	}
	return nil
}
