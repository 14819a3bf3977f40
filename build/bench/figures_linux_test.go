package bench

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// fakeOps answers every operation at once and keeps files like an agent
// would, so the measuring steps run without the real agents.
type fakeOps struct{ data []byte }

func (fakeOps) ping() error                      { return nil }
func (fakeOps) pingPipeline(n, window int) error { return nil }
func (fakeOps) systemInfo() error                { return nil }
func (fakeOps) networkInfo() error               { return nil }
func (fakeOps) diskUsage() error                 { return nil }
func (fakeOps) execTrue() error                  { return nil }
func (f fakeOps) readFile(string) ([]byte, error) {
	return slices.Clone(f.data), nil
}
func (fakeOps) writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }

// sleeper is a real process standing in for an agent: its memory, CPU time
// and executable are read from /proc like an agent's.
func sleeper(t *testing.T) *process {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	p := &process{name: "sleep", cmd: cmd, done: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(0) })
	return p
}

// TestEveryFigureIsProduced runs the measuring steps of a run (idle memory,
// every workload, the executables) on stand-in agents and checks that each
// figure of the report table gets values for both agents, so a figure
// cannot silently drop out of the report.
func TestEveryFigureIsProduced(t *testing.T) {
	fx, err := prepareFixtures(t.TempDir(), 4096)
	if err != nil {
		t.Fatal(err)
	}
	var targets [2]*target
	for i, name := range []string{"kvmmanager-agent", "qemu-ga"} {
		targets[i] = &target{name: name, proc: sleeper(t), ops: fakeOps{fx.data},
			readPath: fx.readPath, writePath: filepath.Join(fx.dataDir, name+"-write.bin")}
	}
	rep := &Report{}
	opts := Options{Rounds: MinRounds, Out: io.Discard}
	v := newValues()
	if err := measureIdle(targets, v); err != nil {
		t.Fatal(err)
	}
	if err := runWorkloads(opts, rep, targets, workloads(workloadCounts(true), fx.data), v); err != nil {
		t.Fatal(err)
	}
	if err := measureExecutables(rep, targets, v); err != nil {
		t.Fatal(err)
	}
	defs := figureDefs("4 KiB")
	listed := map[figureKey]bool{}
	for _, d := range defs {
		listed[d.key] = true
		for i, vals := range v {
			if len(vals[d.key]) == 0 {
				t.Errorf("figure %s (%q) has no value for %s", d.key, d.label, targets[i].name)
			}
		}
	}
	for k := range v[0] {
		if !listed[k] {
			t.Errorf("figure %s is measured but not in the report table", k)
		}
	}
	if got := len(figures(v, "4 KiB")); got != len(defs) {
		t.Errorf("figures() made %d figures, want all %d", got, len(defs))
	}
}
