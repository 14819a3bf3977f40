//go:build vmtest

package libvirt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/distro"
	"github.com/kvmmanager/guest-agent/build/libvirt"
	"github.com/kvmmanager/guest-agent/build/pipeline"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// GuestsEnv selects the guests to run (comma-separated kinds); default
// both, the reference first.
const GuestsEnv = "KVMMANAGER_LIBVIRT_GUESTS"

// env is what every part of the test shares.
type env struct {
	root     string // repository root
	iso      string
	agentctl string        // kvmmanager-agentctl built for the host
	image    *distro.Image // both guests boot it
	workDir  string
	virsh    libvirt.Virsh
}

// TestLibvirt drives real libvirt through virsh against a guest running our
// agent and one running qemu-ga, and checks kvmmanager-agentctl setup.
func TestLibvirt(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommands(t, "virsh", "mmdebstrap", "mkfs.ext4", "qemu-system-x86_64", "qemu-img")
	v := libvirt.Virsh{URI: libvirt.SystemURI, Timeout: 20 * time.Second}
	if r := v.Run(context.Background(), "version"); r.Err != nil {
		testenv.Unavailable(t, "libvirtd is not reachable at %s (start it: virtlogd -d; libvirtd -d): %s", libvirt.SystemURI, r.Output())
	}
	kinds := []string{libvirt.KindReference, libvirt.KindOurs}
	if s := os.Getenv(GuestsEnv); s != "" {
		kinds = strings.Split(s, ",")
	}
	e := setup(t, v)

	t.Run("agentctl-setup", func(t *testing.T) { testAgentctlSetup(t, e) })

	dist := filepath.Join(e.root, "dist", "libvirt")
	runs := map[string]*libvirt.Transcript{}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			tr := runGuest(t, e, kind)
			runs[kind] = tr
			if err := tr.Save(filepath.Join(dist, kind+".json")); err != nil {
				t.Error(err)
			}
		})
	}
	// A guest not run this time is shown from its last saved run.
	for _, kind := range []string{libvirt.KindReference, libvirt.KindOurs} {
		if runs[kind] == nil {
			if tr, err := libvirt.LoadTranscript(filepath.Join(dist, kind+".json")); err == nil {
				runs[kind] = tr
			}
		}
	}
	ref, ours := runs[libvirt.KindReference], runs[libvirt.KindOurs]
	var diffs []libvirt.Difference
	if ref != nil && ours != nil {
		diffs = libvirt.Compare(ref, ours)
	}
	out := filepath.Join(dist, "transcript.md")
	if err := os.WriteFile(out, libvirt.Markdown(ref, ours, diffs), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("transcript: %s", out)
	for _, d := range diffs {
		if d.Documented == "" {
			t.Errorf("undocumented difference from qemu-ga: %s (fix it, or document it in build/libvirt/differences.go and agent/PROTOCOL-qga.md)", d.Key())
		}
	}
}

// setup builds the ISO, agentctl and the image (concurrently; the image
// comes from build/distro's cache when it is there).
func setup(t *testing.T, v libvirt.Virsh) *env {
	root := testenv.RepoRoot(t)
	cache, err := distro.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp("", "kvmmanager-libvirt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest logs kept in %s", work)
			return
		}
		os.RemoveAll(work)
	})
	e := &env{root: root, workDir: work, virsh: v}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		spec, err := libvirt.Spec()
		if err != nil {
			errs[0] = err
			return
		}
		e.image, errs[0] = distro.Build(ctx, spec, cache, testWriter{t})
		t.Logf("image %s: %s", spec.Name, time.Since(start).Round(100*time.Millisecond))
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if e.iso, errs[1] = pipeline.ISO(ctx, pipeline.Options{Root: root, Out: testWriter{t}}); errs[1] != nil {
			return
		}
		e.agentctl = filepath.Join(work, "kvmmanager-agentctl")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.agentctl, "./agent/cmd/kvmmanager-agentctl")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			errs[1] = fmt.Errorf("build kvmmanager-agentctl: %w\n%s", err, out)
		}
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// define defines and starts (unless noStart) a domain, and destroys and
// undefines it when the test ends, whatever happened.
func define(t *testing.T, e *env, d libvirt.Domain, noStart bool) {
	t.Helper()
	doc, err := d.XML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(filepath.Dir(d.Disk), d.Name+".xml")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A domain left by a killed earlier run goes first.
	e.virsh.Run(ctx, "destroy", d.Name)
	e.virsh.Run(ctx, "undefine", d.Name)
	if _, err := e.virsh.Must(ctx, "define", path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.virsh.Run(ctx, "destroy", d.Name)
		if r := e.virsh.Run(ctx, "undefine", d.Name); r.Err != nil {
			t.Errorf("cleanup: %s", r.Output())
		}
	})
	if noStart {
		return
	}
	if _, err := e.virsh.Must(ctx, "start", d.Name); err != nil {
		t.Fatal(err)
	}
}
