package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// startQGA starts qemu-ga on a unix socket in a temporary directory and
// returns a connected client.
func startQGA(t *testing.T) (*qgaAgent, *process, string) {
	t.Helper()
	qga := testenv.NeedCommands(t, "qemu-ga")[0]
	dir, err := os.MkdirTemp("", "qgatest-") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qga.sock")
	p, err := startProcess(context.Background(), "qemu-ga",
		[]string{qga, "-m", "unix-listen", "-p", sock, "-t", dir, "-f", filepath.Join(dir, "pid")},
		filepath.Join(dir, "log"), sock)
	if err != nil {
		t.Fatal(err)
	}
	// qemu-ga 7.2 now and then ignores SIGTERM; that is not the harness's
	// concern, so it is killed after a short grace period.
	t.Cleanup(func() { p.stop(2 * time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx, sock, qgaCodec{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &qgaAgent{c: c}, p, dir
}

// TestQGAOperations drives every workload operation against the real
// qemu-ga once and checks the results, so the codec cannot silently
// measure errors.
func TestQGAOperations(t *testing.T) {
	a, p, dir := startQGA(t)
	for name, op := range map[string]func() error{
		"ping": a.ping, "osinfo": a.systemInfo, "interfaces": a.networkInfo, "exec": a.execTrue,
		"pipeline": func() error { return a.pingPipeline(50, pipelineWindow) },
	} {
		if err := op(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// guest-get-fsinfo lists only filesystems on block devices, which a
	// container may not have.
	if err := a.diskUsage(); err != nil {
		t.Logf("guest-get-fsinfo: %v", err)
	}
	if a.execs != 1 || a.polls < 1 {
		t.Errorf("exec counted %d commands and %d polls", a.execs, a.polls)
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), (qgaChunk*2+qgaChunk/2)/16) // 2.5 chunks
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := a.readFile(in)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("readFile: %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
	out := filepath.Join(dir, "out.bin")
	if err := a.writeFile(out, data); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("written file: %d bytes, %v; want %d bytes", len(got), err, len(data))
	}
	if _, err := a.readFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("reading a missing file succeeded")
	}

	m, err := p.memory()
	if err != nil || m.RSS <= 0 || m.HWM < m.RSS || m.RSSAnon <= 0 || m.RSSFile <= 0 || m.RSSAnon+m.RSSFile > m.RSS {
		t.Errorf("memory = %+v, %v", m, err)
	}
	if err := p.resetPeak(); err != nil {
		t.Error(err)
	}
	if _, err := p.cpuTime(); err != nil {
		t.Error(err)
	}
}

func TestInspectQemuGA(t *testing.T) {
	qga := testenv.NeedCommands(t, "qemu-ga")[0]
	bi, err := inspectBinary(qga)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(bi.Needed, "libglib-2.0.so.0") {
		t.Errorf("DT_NEEDED of %s = %v, want libglib-2.0.so.0 among them", qga, bi.Needed)
	}
	if len(bi.Loaded) <= len(bi.Needed) || bi.Footprint <= bi.SizeBytes {
		t.Errorf("transitive libraries %v (footprint %d) should exceed the direct ones %v", bi.Loaded, bi.Footprint, bi.Needed)
	}
}
