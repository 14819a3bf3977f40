//go:build !windows

package qga

import (
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/server"
)

// The QGA port shares the memory budget: an object larger than the input
// share is refused and skipped, the others are answered, and every byte
// is given back when the session ends.
func TestDialectMemoryBudget(t *testing.T) {
	budget := server.NewBudget(1<<20, 50*time.Millisecond)
	d := newTestDialect(t, nil, Options{MaxObject: 4 << 20, Budget: budget})
	big := func(n int) string { return strings.Repeat("x", n) }
	out := serve(t, d,
		`{"execute":"guest-ping","id":1,"pad":"`+big(100<<10)+`"}`,      // charged, answered with an error
		`{"execute":"test-slow","id":2}{"execute":"guest-ping","id":3}`, // queued, then inline
		`{"execute":"guest-ping","id":4,"pad":"`+big(600<<10)+`"}`,      // beyond half the budget
		`{"execute":"guest-sync","arguments":{"id":5}}`,
	)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		`"QMP input member 'pad' is unexpected"`,
		`{"return":"slow","id":2}`,
		`{"return":{},"id":3}`,
		`memory budget (max_memory_bytes)`,
		`{"return":5}`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d replies, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("reply %d = %.200s, want it to contain %s", i, lines[i], w)
		}
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes of the budget still in use after the session", n)
	}
}
