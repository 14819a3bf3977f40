//go:build vmtest

package libvirt_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/distro"
	"github.com/kvmmanager/guest-agent/build/libvirt"
)

// guest is one booted test domain.
type guest struct {
	t     *testing.T
	e     *env
	kind  string
	name  string // libvirt domain name
	dir   string
	dom   libvirt.Domain
	sh    *libvirt.Shell
	tr    *libvirt.Transcript
	start time.Time
}

// mac is the guest's network interface (user-mode networking; the test
// shell gives it slirp's usual address).
const (
	mac       = "52:54:00:4b:56:4d"
	guestIP   = "10.0.2.15"
	testUser  = "kvmuser"
	testZone  = "Asia/Kolkata" // +05:30, no daylight saving time
	zoneShift = 19800
)

// progress prints a progress line: which guest, how long since its start.
func (g *guest) progress(format string, args ...any) {
	g.t.Helper()
	g.t.Logf("[%s +%5.1fs] %s", g.kind, time.Since(g.start).Seconds(), fmt.Sprintf(format, args...))
}

// boot defines and starts the guest of kind from a fresh overlay and waits
// for the first-boot install, the test shell and the agent.
func boot(t *testing.T, e *env, kind string) *guest {
	dir := filepath.Join(e.workDir, kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := e.image
	arg, err := libvirt.KernelArg(kind)
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{t: t, e: e, kind: kind, name: "kvmtest-libvirt-" + kind, dir: dir, start: time.Now(),
		tr: &libvirt.Transcript{Kind: kind}}
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := img.Overlay(context.Background(), overlay); err != nil {
		t.Fatal(err)
	}
	g.dom = libvirt.Domain{
		Name: g.name, Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: distro.KernelAppend(arg),
		Disk: overlay, CDROM: e.iso, MAC: mac,
		Console: filepath.Join(dir, "console.log"),
		Report:  filepath.Join(dir, "report.log"),
		Shell:   filepath.Join(dir, "shell.sock"),
	}
	define(t, e, g.dom, false)
	t.Cleanup(func() {
		if g.sh != nil {
			g.sh.Close()
		}
		if t.Failed() {
			t.Logf("%s: console %s, admin report %s", kind, g.dom.Console, g.dom.Report)
		}
	})
	g.progress("domain %s started", g.name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	sh, err := libvirt.DialShell(ctx, g.dom.Shell)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	g.sh = sh
	if err := sh.Wait(4 * time.Minute); err != nil {
		t.Fatalf("%v (console %s)", err, g.dom.Console)
	}
	g.progress("test shell answers")
	ctx, cancel = context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, err := distro.WaitReport(ctx, g.dom.Report, nil, func(r distro.Report) bool { return r.Has("admin-done boot=1") })
	if err != nil {
		t.Fatalf("first-boot install: %v (report %s)", err, g.dom.Report)
	}
	if s, ok := r.Section("install"); !ok || s.RC != 0 {
		t.Fatalf("first-boot install failed: %+v", s)
	}
	g.progress("first-boot install done")
	g.waitAgent(3 * time.Minute)
	g.progress("agent answers on %s (first boot to answering agent)", libvirt.PortQGA)
	return g
}

// waitAgent waits until libvirt sees the QGA port connected and the agent
// answers guest-ping through virsh.
func (g *guest) waitAgent(d time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ctx := context.Background()
		if out, err := g.e.virsh.Must(ctx, "dumpxml", g.name); err == nil {
			x, err := libvirt.ParseLiveXML([]byte(out))
			if c, ok := x.Channel(libvirt.PortQGA); err == nil && ok && c.Target.State == "connected" {
				r := g.e.virsh.Run(ctx, "qemu-agent-command", g.name, "--timeout", "5", `{"execute":"guest-ping"}`)
				if r.Err == nil {
					return
				}
				last = r.Output()
			} else {
				last = fmt.Sprintf("port %s state %q", libvirt.PortQGA, c.Target.State)
			}
		} else {
			last = err.Error()
		}
		time.Sleep(time.Second)
	}
	g.t.Fatalf("%s: the agent did not answer within %s: %s (console %s)", g.kind, d, last, g.dom.Console)
}

// run runs a script in the guest through the test shell; it must exit 0.
func (g *guest) run(script string) string {
	g.t.Helper()
	r, err := g.sh.Run(script, 90*time.Second)
	if err != nil {
		g.t.Fatalf("test shell: %v", err)
	}
	if r.Code != 0 {
		g.t.Fatalf("test shell: %q: exit %d: %s", script, r.Code, r.Output)
	}
	return strings.TrimSpace(r.Output)
}

// step runs a virsh command as a step of the transcript; check then
// compares its result with the guest's truth and returns failed checks.
func (g *guest) step(name string, shape func(string) []string, check func(libvirt.Result) []string, args ...string) libvirt.Result {
	g.t.Helper()
	g.progress("%s", name)
	r := g.e.virsh.Run(context.Background(), args...)
	g.record(name, r, shape, check)
	return r
}

// record adds a virsh result to the transcript as a step and checks it
// (check may add to the step's output with note).
func (g *guest) record(name string, r libvirt.Result, shape func(string) []string, check func(libvirt.Result) []string) {
	g.t.Helper()
	g.tr.Steps = append(g.tr.Steps, libvirt.Step{Name: name, Command: r.Command, Output: r.Output()})
	s := &g.tr.Steps[len(g.tr.Steps)-1]
	if r.Err != nil {
		s.Failed = []string{"virsh failed: " + lastLine(r.Output())}
	} else {
		if shape != nil {
			s.Shape = shape(r.Stdout)
		}
		if check != nil {
			s.Failed = check(r)
		}
	}
	for _, f := range s.Failed {
		if why := libvirt.ReferenceFailures[name]; g.kind == libvirt.KindReference && why != "" {
			g.t.Logf("%s: %s: %s (known: %s)", g.kind, name, f, why)
			continue
		}
		g.t.Errorf("%s: %s: %s", g.kind, name, f)
	}
}

// note adds text to the current step's output in the transcript.
func (g *guest) note(text string) {
	s := &g.tr.Steps[len(g.tr.Steps)-1]
	s.Output += "\n" + strings.TrimRight(text, "\n")
}

// fail records a failed check on the last step.
func (g *guest) fail(format string, args ...any) {
	g.t.Helper()
	msg := fmt.Sprintf(format, args...)
	s := &g.tr.Steps[len(g.tr.Steps)-1]
	s.Failed = append(s.Failed, msg)
	g.t.Errorf("%s: %s: %s", g.kind, s.Name, msg)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// agentCommand runs `virsh qemu-agent-command` with a JSON command.
func (g *guest) agentCommand(name, cmd string, check func(out string) []string) libvirt.Result {
	g.t.Helper()
	return g.step(name, libvirt.JSONShape, func(r libvirt.Result) []string { return check(r.Stdout) },
		"qemu-agent-command", g.name, "--timeout", "30", cmd)
}
