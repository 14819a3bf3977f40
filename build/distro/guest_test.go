//go:build vmtest

package distro_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/build/distro"
	"github.com/kvmmanager/guest-agent/build/vm"
)

// guest is one booted test VM of a scenario.
type guest struct {
	t       *testing.T
	name    string
	m       *vm.Machine
	console string // serial console (ttyS0): kernel and init messages
	report  string // second serial port (ttyS1): the admin's report
	socket  string // agent port's host socket; "" without the port
	c       *client.Client
	start   time.Time
}

// bootOptions vary a scenario's VM.
type bootOptions struct {
	NoPort  bool          // no virtio-serial port org.kvmmanager.agent.0
	Append  []string      // extra kernel command line words
	Timeout time.Duration // watchdog
}

// boot starts img from a fresh qcow2 overlay in dir with the base ISO in the
// CD-ROM drive. The overlay is deleted at the end of the test; the console
// log and the report are kept (and their paths printed) when it fails.
func boot(t *testing.T, e *env, img *distro.Image, opts bootOptions) *guest {
	t.Helper()
	dir := filepath.Join(e.logDir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "disk.qcow2")
	if err := img.Overlay(context.Background(), overlay); err != nil {
		t.Fatal(err)
	}
	g := &guest{
		t:       t,
		name:    t.Name(),
		console: filepath.Join(dir, "console.log"),
		report:  filepath.Join(dir, "report.log"),
	}
	if !opts.NoPort {
		g.socket = filepath.Join(dir, "agent.sock")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 6 * time.Minute
	}
	cfg := vm.Config{
		Arch:        "amd64",
		Kernel:      img.Kernel,
		Initrd:      img.Initrd,
		Append:      distro.KernelAppend(opts.Append...),
		MemoryMiB:   768,
		CPUs:        1,
		Disk:        overlay,
		CDROM:       e.iso,
		AgentSocket: g.socket,
		Timeout:     opts.Timeout,
		ConsoleLog:  g.console,
		// The second serial port (ttyS1) carries the admin's report.
		ExtraArgs: []string{"-serial", "file:" + g.report},
	}
	g.start = time.Now()
	m, err := vm.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.m = m
	t.Cleanup(func() {
		if g.c != nil {
			g.c.Close()
		}
		m.Kill()
		<-m.Done()
		os.Remove(overlay)
		if t.Failed() {
			t.Logf("guest logs kept: console %s, admin report %s", g.console, g.report)
		}
	})
	if g.socket != "" {
		g.c = dialAgent(t, g.socket)
	}
	return g
}

// dialAgent connects to the host socket QEMU listens on, waiting for QEMU
// to create it.
func dialAgent(t *testing.T, socket string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := client.Dial(ctx, socket, client.WithCallTimeout(20*time.Second),
			client.WithReadyPolling(time.Second, 3*time.Second))
		if err == nil {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("agent socket: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitAgent waits until the agent answers, for at most d.
func (g *guest) waitAgent(d time.Duration) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := g.c.WaitReady(ctx); err != nil {
		g.t.Fatalf("%s: %v (console %s)", g.name, err, g.console)
	}
}

// exec runs a shell command through the agent's exec_command and returns
// its result; an RPC error fails the test.
func (g *guest) exec(script string) protocol.ExecResult {
	g.t.Helper()
	r, err := g.tryExec(script, 60*time.Second)
	if err != nil {
		g.t.Fatalf("exec %q: %v", script, err)
	}
	return r
}

func (g *guest) tryExec(script string, d time.Duration) (protocol.ExecResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	secs := int(d/time.Second) - 5
	return g.c.Exec(ctx, protocol.ExecParams{Command: "/bin/sh", Args: []string{"-c", script}, TimeoutSeconds: &secs})
}

// run runs a shell command that must exit 0 and returns its trimmed stdout.
func (g *guest) run(script string) string {
	g.t.Helper()
	r := g.exec(script)
	if r.ExitCode != 0 {
		g.t.Fatalf("exec %q: exit %d\nstdout: %s\nstderr: %s", script, r.ExitCode, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}

// output runs a shell command and returns its trimmed stdout, whatever its
// exit code (for commands like systemctl is-active that report in both).
func (g *guest) output(script string) string {
	g.t.Helper()
	return strings.TrimSpace(g.exec(script).Stdout)
}

// poll runs script through the agent until its trimmed stdout satisfies ok,
// tolerating an agent that is restarting or away (the client resyncs after a
// timed-out call), for at most d. It returns the last output.
func (g *guest) poll(what, script string, d time.Duration, ok func(string) bool) string {
	g.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	var lastErr error
	for time.Now().Before(deadline) {
		r, err := g.tryExec(script, 15*time.Second)
		if err == nil {
			last, lastErr = strings.TrimSpace(r.Stdout), nil
			if ok(last) {
				return last
			}
		} else {
			lastErr = err
			if errors.Is(err, client.ErrClosed) {
				break
			}
		}
		select {
		case <-g.m.Done():
			g.t.Fatalf("%s: the VM stopped while waiting for %s (console %s)", g.name, what, g.console)
		case <-time.After(time.Second):
		}
	}
	g.t.Fatalf("%s: timed out after %s waiting for %s: last output %q, last error %v", g.name, d, what, last, lastErr)
	return ""
}

// waitPowerOff waits up to d for QEMU to exit by itself after what (a
// shutdown call, the admin's observation) and fails the test if it does not
// or if it exited with an error.
func (g *guest) waitPowerOff(d time.Duration, what string) {
	g.t.Helper()
	select {
	case <-g.m.Done():
	case <-time.After(d):
		g.t.Fatalf("%s: QEMU still runs %s after %s (console %s)", g.name, d, what, g.console)
	}
	if err := g.m.Wait(); err != nil {
		g.t.Fatalf("%s: QEMU did not exit by itself after %s: %v", g.name, what, err)
	}
}

// bootID returns the guest kernel's boot id, which changes at every boot.
func (g *guest) bootID() string {
	g.t.Helper()
	return g.run("cat /proc/sys/kernel/random/boot_id")
}

// rebootThroughAgent reboots through the agent's reboot method and waits
// until the agent answers from the new boot.
func (g *guest) rebootThroughAgent() time.Duration {
	g.t.Helper()
	before := g.bootID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, err := g.c.Reboot(ctx, protocol.PowerParams{})
	cancel()
	if err != nil || !res.Initiated {
		g.t.Fatalf("reboot: %+v, %v", res, err)
	}
	start := time.Now()
	g.poll("the agent after the reboot", "cat /proc/sys/kernel/random/boot_id", 10*time.Minute,
		func(id string) bool { return id != "" && id != before })
	return time.Since(start)
}

// waitReport waits until the admin's report satisfies ok.
func (g *guest) waitReport(what string, d time.Duration, ok func(distro.Report) bool) distro.Report {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := distro.WaitReport(ctx, g.report, g.m.Done(), ok)
	if err != nil {
		g.t.Fatalf("%s: %s: %v (console %s)", g.name, what, err, g.console)
	}
	return r
}

// installed waits for the first-boot install to finish and returns its
// section, which must have succeeded.
func (g *guest) installed() distro.Section {
	g.t.Helper()
	r := g.waitReport("first-boot install", 10*time.Minute, func(r distro.Report) bool { return r.Has("admin-done boot=1") })
	if s, ok := r.Section("mount"); !ok || s.RC != 0 {
		g.t.Fatalf("mounting the CD failed: %+v", s)
	}
	s, ok := r.Section("install")
	if !ok {
		g.t.Fatalf("no install section in the report %s", g.report)
	}
	g.t.Logf("first-boot install (%s) exit %d:\n%s", g.name, s.RC, indent(s.Output))
	if s.RC != 0 {
		g.t.Fatalf("the installer failed with exit code %d", s.RC)
	}
	return s
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}
