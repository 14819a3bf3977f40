//go:build vmtest

package distro_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/build/distro"
	"github.com/kvmmanager/guest-agent/build/packages"
	"github.com/kvmmanager/guest-agent/build/pipeline"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// upgradeVersion is the version of the second ISO, installed over the first
// in the systemd scenario.
const upgradeVersion = "9.9.9-upgrade"

// agentUnitDevice is the device unit the udev rule gives the port.
const agentUnitDevice = `dev-virtio\x2dports-org.kvmmanager.agent.0.device`

// env is what every scenario shares: the two ISOs and the two images.
type env struct {
	iso         string // built at the checkout's version
	isoUpgrade  string // built at upgradeVersion
	baseVersion string
	systemd     *distro.Image
	openrc      *distro.Image
	logDir      string // per-scenario overlays and logs
}

// TestDistro boots real Debian 12 guests (systemd with udev, and OpenRC),
// lets a first-boot administrator install the agent from the ISO, and checks
// the result from the host through the client package. `go tool mage distro`
// runs it.
func TestDistro(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommands(t, "mmdebstrap", "mkfs.ext4", "qemu-system-x86_64", "qemu-img")
	e := setup(t)
	t.Run("systemd", func(t *testing.T) { t.Parallel(); scenarioSystemd(t, e) })
	t.Run("openrc", func(t *testing.T) { t.Parallel(); scenarioOpenRC(t, e) })
	t.Run("openrc-noport", func(t *testing.T) { t.Parallel(); scenarioOpenRCNoPort(t, e) })
	t.Run("noport", func(t *testing.T) { t.Parallel(); scenarioNoPort(t, e) })
	t.Run("shutdown", func(t *testing.T) { t.Parallel(); scenarioShutdown(t, e) })
}

// setup builds the ISOs and the images (concurrently; the images come from
// the cache when they are there).
func setup(t *testing.T) *env {
	root := testenv.RepoRoot(t)
	cache, err := distro.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	logDir, err := os.MkdirTemp("", "kvmmanager-distro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("scenario logs kept in %s", logDir)
			return
		}
		os.RemoveAll(logDir)
	})
	e := &env{logDir: logDir}
	info, err := pipeline.Info(pipeline.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	e.baseVersion = info.Version

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	log := testWriter{t}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	timed := func(i int, what string, f func() error) {
		defer wg.Done()
		start := time.Now()
		errs[i] = f()
		t.Logf("%s: %s", what, time.Since(start).Round(100*time.Millisecond))
	}
	wg.Add(3)
	go timed(0, "images: "+distro.Debian12Systemd.Name, func() (err error) {
		e.systemd, err = distro.Build(ctx, distro.Debian12Systemd, cache, log)
		return err
	})
	go timed(1, "images: "+distro.Debian12OpenRC.Name, func() (err error) {
		e.openrc, err = distro.Build(ctx, distro.Debian12OpenRC, cache, log)
		return err
	})
	// The two ISOs share the Go build cache; build them one after the other.
	go timed(2, "ISOs", func() (err error) {
		if e.iso, err = pipeline.ISO(ctx, pipeline.Options{Root: root, Out: log}); err != nil {
			return err
		}
		e.isoUpgrade, err = pipeline.ISO(ctx, pipeline.Options{
			Root: root, Dist: filepath.Join(root, "dist", "distro-upgrade"), Version: upgradeVersion, Out: log,
		})
		return err
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return e
}

// testWriter sends build progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// debVersion is the .deb version string of a semantic version.
func debVersion(t *testing.T, v string) string {
	t.Helper()
	d, err := packages.FormatVersion("deb", v)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// scenarioSystemd: install-debian.sh at first boot; udev activation; reboot;
// upgrade keeping an edited config; uninstall, then purge.
func scenarioSystemd(t *testing.T, e *env) {
	g := boot(t, e, e.systemd, bootOptions{Timeout: 12 * time.Minute})
	g.waitAgent(5 * time.Minute)
	t.Logf("boot to first answer: %s", time.Since(g.start).Round(100*time.Millisecond))
	g.installed()

	ctx := context.Background()
	sys, err := g.c.SystemInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sys.OSName, "Debian") || !strings.HasPrefix(sys.OSVersion, "12") {
		t.Errorf("get_system_info: os %q version %q, want Debian 12", sys.OSName, sys.OSVersion)
	}
	if sys.Hostname != "kvmtest-"+distro.Debian12Systemd.Name {
		t.Errorf("get_system_info hostname %q", sys.Hostname)
	}
	info, err := g.c.AgentInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != e.baseVersion {
		t.Errorf("get_agent_info version %q, want %q", info.Version, e.baseVersion)
	}
	if st := g.run("dpkg-query -W -f='${Status} ${Version}' kvmmanager-agent"); st != "install ok installed "+debVersion(t, e.baseVersion) {
		t.Errorf("dpkg status %q", st)
	}
	checkUdevActivation(t, g)
	// The guest reads every file of the disc as the build wrote it.
	if r := g.exec("cd /media/cdrom && sha256sum -c --quiet sha256sums.txt"); r.ExitCode != 0 {
		t.Errorf("sha256sum -c on the mounted ISO: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
	}

	// 2. Reboot through the agent; udev must start it again.
	d := g.rebootThroughAgent()
	t.Logf("reboot to first answer: %s", d.Round(100*time.Millisecond))
	checkUdevActivation(t, g)

	// 3. Edit the config, then upgrade from a newer ISO through the agent.
	const cfg = "/etc/kvmmanager-agent/config.json"
	g.run(`sed -i 's/"command_timeout_seconds": *30/"command_timeout_seconds": 45/' ` + cfg)
	edited := g.run("sha256sum " + cfg)
	if !strings.Contains(g.run("cat "+cfg), `"command_timeout_seconds": 45`) {
		t.Fatalf("the sed edit of %s did not apply", cfg)
	}
	// /etc stays out of file_write's reach by default.
	_, err = g.c.WriteFile(ctx, protocol.FileWriteParams{Path: "/etc/kvmtest-probe", Content: "x"})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodePermissionDenied {
		t.Errorf("file_write to /etc: %v, want a permission error (%d)", err, protocol.CodePermissionDenied)
	}

	g.run("if mountpoint -q /media/cdrom; then umount /media/cdrom; fi")
	if err := g.m.ChangeCDROM(e.isoUpgrade); err != nil {
		t.Fatal(err)
	}
	// Detached: the installer restarts the agent that runs it.
	g.run(`systemd-run --no-block --unit kvmtest-upgrade -p RemainAfterExit=yes /bin/sh -c ` +
		`'mount -o ro /dev/sr0 /media/cdrom && cd /root && bash /media/cdrom/install-debian.sh'`)
	g.poll("the upgraded agent", `systemctl show -p SubState --value kvmtest-upgrade`, 4*time.Minute,
		func(s string) bool { return s == "exited" || s == "failed" })
	upg := g.run("systemctl show -p Result -p ExecMainStatus kvmtest-upgrade")
	t.Logf("upgrade unit: %s; its log:\n%s", strings.ReplaceAll(upg, "\n", " "), indent(g.output("journalctl -u kvmtest-upgrade -o cat --no-pager")))
	if p := distro.SystemdProperties(upg); p["Result"] != "success" || p["ExecMainStatus"] != "0" {
		t.Fatalf("the upgrade failed: %s", upg)
	}
	info = waitVersion(t, g, upgradeVersion)
	if st := g.run("dpkg-query -W -f='${Status} ${Version}' kvmmanager-agent"); st != "install ok installed "+debVersion(t, upgradeVersion) {
		t.Errorf("dpkg status after the upgrade %q", st)
	}
	if after := g.run("sha256sum " + cfg); after != edited {
		t.Errorf("the edited config changed in the upgrade:\n%s", g.run("cat "+cfg))
	}
	if s := g.output("ls /etc/kvmmanager-agent"); s != "config.json" {
		t.Errorf("/etc/kvmmanager-agent after the upgrade holds %q, want only config.json", s)
	}
	if s := g.output("systemctl is-active kvmmanager-agent"); s != "active" {
		t.Errorf("after the upgrade: is-active %q", s)
	}

	// 4. Uninstall. The agent goes away with it, so a transient unit runs
	// uninstall.sh and then starts the CD's own agent binary (not the
	// installed one) as an observer, through which the host looks at what
	// uninstall.sh left behind and runs --purge.
	g.run(`systemd-run --no-block --unit kvmtest-uninstall /bin/sh -c '` +
		`sh /media/cdrom/uninstall.sh >/run/kvmtest-uninstall.log 2>&1; echo $? >/run/kvmtest-uninstall.rc; ` +
		`exec systemd-run --unit kvmtest-observer /media/cdrom/linux-amd64/kvmmanager-agent --config /media/cdrom/config.json'`)
	g.poll("the observer agent", "systemctl is-active kvmtest-observer", 3*time.Minute,
		func(s string) bool { return s == "active" })
	t.Logf("uninstall.sh exit %s:\n%s", g.run("cat /run/kvmtest-uninstall.rc"), indent(g.run("cat /run/kvmtest-uninstall.log")))
	if rc := g.run("cat /run/kvmtest-uninstall.rc"); rc != "0" {
		t.Fatalf("uninstall.sh exit %s", rc)
	}
	checks := []struct{ what, script, want string }{
		{"service unit gone", "systemctl show -p LoadState --value kvmmanager-agent", "not-found"},
		{"service stopped", "systemctl is-active kvmmanager-agent", "inactive"},
		{"binary gone", "test -e /usr/bin/kvmmanager-agent && echo present || echo absent", "absent"},
		{"unit file gone", "test -e /usr/lib/systemd/system/kvmmanager-agent.service && echo present || echo absent", "absent"},
		{"udev rule gone", "test -e /usr/lib/udev/rules.d/60-kvmmanager-agent.rules && echo present || echo absent", "absent"},
		{"package removed, config kept", "dpkg-query -W -f='${Status}' kvmmanager-agent", "deinstall ok config-files"},
		{"edited config kept", "sha256sum " + cfg, edited},
	}
	for _, c := range checks {
		if got := g.output(c.script); got != c.want {
			t.Errorf("after uninstall.sh: %s: %q, want %q", c.what, got, c.want)
		}
	}
	purge := g.exec("sh /media/cdrom/uninstall.sh --purge")
	t.Logf("uninstall.sh --purge exit %d:\n%s", purge.ExitCode, indent(purge.Stdout+purge.Stderr))
	if purge.ExitCode != 0 {
		t.Fatalf("uninstall.sh --purge failed")
	}
	if got := g.output("test -e /etc/kvmmanager-agent && echo present || echo absent"); got != "absent" {
		t.Errorf("after --purge: /etc/kvmmanager-agent %s", got)
	}
	if st := g.output("dpkg-query -W -f='${Status}' kvmmanager-agent 2>/dev/null"); st != "" && st != "unknown ok not-installed" {
		t.Errorf("after --purge: dpkg status %q", st)
	}
}

// checkUdevActivation checks that the agent runs and that udev, not
// multi-user.target, started it.
func checkUdevActivation(t *testing.T, g *guest) {
	t.Helper()
	if s := g.output("systemctl is-active kvmmanager-agent"); s != "active" {
		t.Errorf("systemctl is-active kvmmanager-agent: %q", s)
	}
	if s := g.output("systemctl is-enabled kvmmanager-agent"); s == "enabled" {
		t.Errorf("systemctl is-enabled kvmmanager-agent: %q, want it not enabled (udev starts it)", s)
	}
	if s := g.output("test -e /etc/systemd/system/multi-user.target.wants/kvmmanager-agent.service && echo present || echo absent"); s != "absent" {
		t.Errorf("multi-user.target.wants/kvmmanager-agent.service is %s", s)
	}
	p := distro.SystemdProperties(g.run("systemctl show -p WantedBy -p BindsTo -p NRestarts kvmmanager-agent"))
	// udev's SYSTEMD_WANTS makes the port's device (named by its sysfs path,
	// .../virtio-ports/vportNpM) want the service.
	wantedBy := distro.SystemdUnits(p["WantedBy"])
	byPort := false
	for _, u := range wantedBy {
		if u == "multi-user.target" {
			t.Errorf("kvmmanager-agent is wanted by multi-user.target")
		}
		if strings.HasSuffix(u, ".device") && strings.Contains(u, `virtio\x2dports-vport`) {
			byPort = true
		}
	}
	if !byPort {
		t.Errorf("kvmmanager-agent WantedBy=%q, want the port's device (udev's SYSTEMD_WANTS)", wantedBy)
	}
	// No BindsTo=: the agent serves two ports and stays while either is
	// there (the unit's OR-ed ConditionPathExists keeps it from starting
	// without one).
	if b := distro.SystemdUnits(p["BindsTo"]); len(b) != 0 {
		t.Errorf("kvmmanager-agent BindsTo=%q, want none", b)
	}
	// systemd-udevd names a rule file it cannot parse in its log.
	if s := g.output("journalctl -b -u systemd-udevd --no-pager -o cat | grep -i kvmmanager"); s != "" {
		t.Errorf("systemd-udevd logged about the agent's rule:\n%s", s)
	}
	if p["NRestarts"] != "0" {
		t.Errorf("kvmmanager-agent NRestarts=%s", p["NRestarts"])
	}
}

// waitVersion waits until get_agent_info reports version.
func waitVersion(t *testing.T, g *guest, version string) protocol.AgentInfo {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last protocol.AgentInfo
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last, lastErr = g.c.AgentInfo(ctx)
		cancel()
		if lastErr == nil && last.Version == version {
			return last
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("get_agent_info never reported %s: last %+v, %v", version, last, lastErr)
	return last
}

// scenarioShutdown: a separate boot powered off through the agent's
// shutdown method; QEMU must exit by itself (no watchdog kill).
func scenarioShutdown(t *testing.T, e *env) {
	g := boot(t, e, e.systemd, bootOptions{Timeout: 8 * time.Minute})
	g.waitAgent(5 * time.Minute)
	g.installed()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, err := g.c.Shutdown(ctx, protocol.PowerParams{})
	cancel()
	if err != nil || !res.Initiated {
		t.Fatalf("shutdown: %+v, %v", res, err)
	}
	start := time.Now()
	g.waitPowerOff(3*time.Minute, "the shutdown call")
	t.Logf("shutdown call to QEMU exit: %s", time.Since(start).Round(100*time.Millisecond))
	con, err := os.ReadFile(g.console)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(con), "reboot: Power down") {
		t.Errorf("the console log %s does not show the kernel powering down", g.console)
	}
}

// scenarioOpenRC: install.sh's generic path on Debian with OpenRC.
func scenarioOpenRC(t *testing.T, e *env) {
	g := boot(t, e, e.openrc, bootOptions{Timeout: 10 * time.Minute})
	g.waitAgent(5 * time.Minute)
	t.Logf("boot to first answer: %s", time.Since(g.start).Round(100*time.Millisecond))
	inst := g.installed()
	if !strings.Contains(inst.Output, "by copying files") {
		t.Errorf("install.sh did not take the generic path:\n%s", inst.Output)
	}
	ctx := context.Background()
	sys, err := g.c.SystemInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sys.OSName, "Debian") {
		t.Errorf("get_system_info os_name %q", sys.OSName)
	}
	if s := g.output("test -d /run/systemd/system && echo systemd || echo not-systemd"); s != "not-systemd" {
		t.Fatalf("the OpenRC guest runs systemd")
	}
	for _, f := range []string{"/usr/bin/kvmmanager-agent", "/etc/init.d/kvmmanager-agent", "/etc/conf.d/kvmmanager-agent", "/etc/kvmmanager-agent/config.json"} {
		if s := g.output("test -e " + f + " && echo present"); s != "present" {
			t.Errorf("%s missing after the generic install", f)
		}
	}
	if st := g.output("dpkg-query -W -f='${Status}' kvmmanager-agent 2>/dev/null"); strings.Contains(st, "ok installed") {
		t.Errorf("the generic path installed the .deb: %q", st)
	}
	checkOpenRC := func(boot string, wantConnects int) {
		t.Helper()
		st := g.exec("rc-service kvmmanager-agent status")
		if !strings.Contains(st.Stdout+st.Stderr, "started") {
			t.Errorf("%s: rc-service kvmmanager-agent status: %q %q", boot, st.Stdout, st.Stderr)
		}
		if s := g.output("rc-update show default"); !strings.Contains(s, "kvmmanager-agent") {
			t.Errorf("%s: kvmmanager-agent is not in the default runlevel:\n%s", boot, s)
		}
		log, err := g.c.ReadFile(ctx, "/var/log/kvmmanager-agent/agent.log", protocol.EncodingUTF8)
		if err != nil {
			t.Fatalf("%s: file_read agent.log: %v", boot, err)
		}
		if n := strings.Count(log.Content, "Connected to virtio-serial device"); n < wantConnects {
			t.Errorf("%s: agent.log has %d \"Connected to virtio-serial device\" lines, want at least %d:\n%s", boot, n, wantConnects, log.Content)
		}
		t.Logf("%s: agent.log:\n%s", boot, indent(log.Content))
	}
	checkOpenRC("first boot", 1)
	d := g.rebootThroughAgent()
	t.Logf("reboot to first answer: %s", d.Round(100*time.Millisecond))
	checkOpenRC("after the reboot", 2)
	// The admin runs after the runlevel's services, so after the agent.
	r := g.waitReport("the admin at the second boot", 2*time.Minute, func(r distro.Report) bool { return r.Has("admin-done boot=2") })
	installs := 0
	for _, s := range r.Sections {
		if s.Name == "install" {
			installs++
		}
	}
	if installs != 1 {
		t.Errorf("the first-boot installer ran %d times, want once", installs)
	}
}

// observeWithoutPort boots img without the agent's port, checks that the
// first-boot installer warned about it, and returns the admin's report once
// it has watched the service for 60 s (the VM then powers off).
func observeWithoutPort(t *testing.T, e *env, img *distro.Image, timeout time.Duration) (*guest, distro.Report) {
	t.Helper()
	g := boot(t, e, img, bootOptions{NoPort: true, Append: []string{"kvmtest.observe=60"}, Timeout: timeout})
	inst := g.installed()
	if !strings.Contains(inst.Output, "no virtio-serial port named org.kvmmanager.agent.0") {
		t.Errorf("the installer did not warn about the missing port:\n%s", inst.Output)
	}
	r := g.waitReport("the 60 s observation", 4*time.Minute, func(r distro.Report) bool { return r.Has("observe-done") })
	return g, r
}

// scenarioNoPort: the systemd image without the agent's port. After the
// install and 60 s the admin dumps the service's state and journal to the
// report and powers off.
func scenarioNoPort(t *testing.T, e *env) {
	g, r := observeWithoutPort(t, e, e.systemd, 8*time.Minute)
	svc, _ := r.Section("service")
	jr, _ := r.Section("journal")
	t.Logf("after 60 s without the port:\n%s\njournalctl -u kvmmanager-agent:\n%s", indent(svc.Output), indent(jr.Output))
	p := distro.SystemdProperties(svc.Output)
	restarts, err := strconv.Atoi(p["NRestarts"])
	if err != nil {
		t.Fatalf("NRestarts: %q", p["NRestarts"])
	}
	switch {
	case p["ActiveState"] == "inactive" && restarts == 0:
		// Not started at all: udev never saw the port.
	case p["ActiveState"] == "active" && restarts <= 2:
		// Started once and waiting for the port without crashing.
	default:
		t.Errorf("kvmmanager-agent without the port: ActiveState=%s NRestarts=%d, want not started or running without a restart loop", p["ActiveState"], restarts)
	}
	if err := calmLog(distro.ParseJournal(jr.Output), 3); err != nil {
		t.Error(err)
	}
	g.waitPowerOff(2*time.Minute, "the observation")
}

// scenarioOpenRCNoPort: the OpenRC image without the agent's port. The
// service starts anyway (OpenRC has no device activation); the agent must
// log the missing port once and keep looking for it calmly, without
// supervise-daemon respawning it.
func scenarioOpenRCNoPort(t *testing.T, e *env) {
	g, r := observeWithoutPort(t, e, e.openrc, 10*time.Minute)
	svc, _ := r.Section("service")
	lg, _ := r.Section("log")
	t.Logf("after 60 s without the port:\n%s\nagent.log:\n%s", indent(svc.Output), indent(lg.Output))
	if !strings.Contains(svc.Output, "started") {
		t.Errorf("rc-service kvmmanager-agent status: %q, want started (the agent waits for the port)", svc.Output)
	}
	es := distro.ParseSlog(lg.Output)
	starts, missing := 0, 0
	for _, e := range es {
		if strings.Contains(e.Message, `msg="kvmmanager-agent starting"`) {
			starts++
		}
		if strings.Contains(e.Message, "Virtio-serial device not found") {
			missing++
		}
	}
	if starts != 1 {
		t.Errorf("the agent started %d times in 60 s without the port, want once (no respawn loop)", starts)
	}
	if missing == 0 {
		t.Errorf("agent.log does not say the port is missing")
	}
	if err := calmLog(es, 3); err != nil {
		t.Error(err)
	}
	g.waitPowerOff(3*time.Minute, "the observation")
}

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
