//go:build vmtest

package distro_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// agentConfig is the agent's configuration file in the guest.
const agentConfig = "/etc/kvmmanager-agent/config.json"

// env is what every scenario shares: the two ISOs and the images.
type env struct {
	root        string // the repository
	iso         string // built at the checkout's version
	isoUpgrade  string // built at upgradeVersion
	baseVersion string
	logDir      string // per-scenario overlays and logs
	images      map[string]*imageBuild
}

// imageBuild is an image being built (or taken from the cache) in the
// background; done is closed when img or err is set.
type imageBuild struct {
	done     chan struct{}
	img      *distro.Image
	err      error
	duration time.Duration
}

// ready reports whether the build of spec's image has ended.
func (e *env) ready(spec distro.Spec) bool {
	select {
	case <-e.images[spec.Name].done:
		return true
	default:
		return false
	}
}

// image waits for the image of spec and fails t if it could not be built.
func (e *env) image(t *testing.T, spec distro.Spec) *distro.Image {
	t.Helper()
	b := e.images[spec.Name]
	<-b.done
	if b.err != nil {
		t.Fatalf("image %s: %v", spec.Name, b.err)
	}
	return b.img
}

// suite is one guest system of the matrix and what the agent must report
// on it.
type suite struct {
	name      string // first part of the subtest name
	spec      distro.Spec
	osName    string // get_system_info os_name
	osVersion string // prefix of os_version
	pkg       pkgTool
}

var (
	debian11 = suite{"debian11", distro.Debian11Systemd, "Debian GNU/Linux", "11 (bullseye)", dpkgTool}
	debian12 = suite{"debian12", distro.Debian12Systemd, "Debian GNU/Linux", "12 (bookworm)", dpkgTool}
	debian13 = suite{"debian13", distro.Debian13Systemd, "Debian GNU/Linux", "13 (trixie)", dpkgTool}
	// rocky9 is a Debian 12 guest acting as an rpm system (see distro.Rocky9RPM).
	rocky9         = suite{"rocky9-on-debian12", distro.Rocky9RPM, "Rocky Linux", "9.4 (Blue Onyx)", rpmTool}
	debian12OpenRC = suite{"debian12", distro.Debian12OpenRC, "Debian GNU/Linux", "12 (bookworm)", pkgTool{}}
)

// scenario is one cell of the matrix: a scenario run on a suite's image.
type scenario struct {
	suite suite
	name  string
	run   func(t *testing.T, e *env, s suite, img *distro.Image)
}

// scenarios in the order they start: the longest first, so that the short
// ones fill the gaps at the end. A scenario whose image is not built yet is
// passed over for a later one whose image is.
var scenarios = []scenario{
	{debian12, "systemd", scenarioSystemd},
	{rocky9, "rpm", scenarioSystemd},
	{debian11, "systemd", scenarioSystemd},
	{debian13, "systemd", scenarioSystemd},
	{debian12OpenRC, "openrc", scenarioOpenRC},
	{debian12, "noport", scenarioNoPort},
	{debian12OpenRC, "openrc-noport", scenarioOpenRCNoPort},
}

// TestDistro boots real Debian 11, 12 and 13 guests (systemd with udev, and
// OpenRC) and a Debian guest acting as Rocky Linux 9 (rpm), lets a
// first-boot administrator install the agent from the ISO, and checks the
// result from the host through the client package. Each scenario is the
// subtest SUITE/SCENARIO; the table of results and times is logged at the
// end and written to dist/distro/matrix.md. `go tool mage distro` runs it.
func TestDistro(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommands(t, "mmdebstrap", "mkfs.ext4", "qemu-system-x86_64", "qemu-img")
	e := setup(t)
	var mu sync.Mutex
	var rows []matrixRow
	t.Cleanup(func() {
		table := matrixTable(rows, e)
		t.Logf("distro matrix:\n%s", table)
		out := filepath.Join(e.root, "dist", "distro", "matrix.md")
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
			if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
				t.Logf("write %s: %v", out, err)
			}
		}
	})
	runOne := func(sc scenario) {
		t.Run(sc.suite.name+"/"+sc.name, func(t *testing.T) {
			img := e.image(t, sc.suite.spec)
			start := time.Now()
			t.Cleanup(func() {
				result := "pass"
				switch {
				case t.Skipped():
					result = "skip"
				case t.Failed():
					result = "FAIL"
				}
				mu.Lock()
				rows = append(rows, matrixRow{sc.suite.name, sc.name, result, time.Since(start)})
				mu.Unlock()
			})
			sc.run(t, e, sc.suite, img)
		})
	}
	// vmsAtOnce workers take the first scenario whose image is ready.
	queue := append([]scenario(nil), scenarios...)
	next := func() (scenario, bool) {
		for {
			mu.Lock()
			if len(queue) == 0 {
				mu.Unlock()
				return scenario{}, false
			}
			for i, sc := range queue {
				if e.ready(sc.suite.spec) {
					queue = append(queue[:i], queue[i+1:]...)
					mu.Unlock()
					return sc, true
				}
			}
			mu.Unlock()
			time.Sleep(time.Second)
		}
	}
	var wg sync.WaitGroup
	for range vmsAtOnce {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sc, ok := next(); ok; sc, ok = next() {
				runOne(sc)
			}
		}()
	}
	wg.Wait()
}

// vmsAtOnce is how many scenario VMs run at the same time (each has one
// vCPU under TCG; the machine has two cores).
const vmsAtOnce = 2

// matrixRow is one scenario's outcome.
type matrixRow struct {
	suite, scenario, result string
	took                    time.Duration
}

// matrixTable formats rows in the order of scenarios, with the image build
// (or cache) times, as Markdown.
func matrixTable(rows []matrixRow, e *env) string {
	var b strings.Builder
	b.WriteString("| suite | scenario | result | time |\n|---|---|---|---:|\n")
	for _, sc := range scenarios {
		r := matrixRow{sc.suite.name, sc.name, "not run", 0}
		for _, x := range rows {
			if x.suite == sc.suite.name && x.scenario == sc.name {
				r = x
			}
		}
		took := "–"
		if r.took > 0 {
			took = fmt.Sprintf("%.1f min", r.took.Minutes())
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.suite, r.scenario, r.result, took)
	}
	b.WriteString("\n| image | build or cache |\n|---|---:|\n")
	for _, spec := range distro.Specs {
		if ib, ok := e.images[spec.Name]; ok {
			select {
			case <-ib.done:
				fmt.Fprintf(&b, "| %s (%s) | %.1f min |\n", spec.Name, spec.Suite, ib.duration.Minutes())
			default:
			}
		}
	}
	return b.String()
}

// setup starts building the images in the background (they come from the
// cache when they are there; a scenario waits only for its own) and builds
// the two ISOs.
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
	e := &env{root: root, logDir: logDir, images: map[string]*imageBuild{}}
	info, err := pipeline.Info(pipeline.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	e.baseVersion = info.Version

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	log := testWriter{t}
	var builds sync.WaitGroup
	// Every image at once: mmdebstrap spends much of its time downloading
	// and in single-threaded dpkg runs, so the builds overlap well.
	for _, spec := range distro.Specs {
		b := &imageBuild{done: make(chan struct{})}
		e.images[spec.Name] = b
		builds.Add(1)
		go func() {
			defer builds.Done()
			defer close(b.done)
			start := time.Now()
			b.img, b.err = distro.Build(ctx, spec, cache, log)
			b.duration = time.Since(start)
			t.Logf("image %s: %s", spec.Name, b.duration.Round(100*time.Millisecond))
		}()
	}
	t.Cleanup(func() { cancel(); builds.Wait() })

	// The two ISOs share the Go build cache; build them one after the other.
	start := time.Now()
	if e.iso, err = pipeline.ISO(ctx, pipeline.Options{Root: root, Out: log}); err != nil {
		t.Fatal(err)
	}
	e.isoUpgrade, err = pipeline.ISO(ctx, pipeline.Options{
		Root: root, Dist: filepath.Join(root, "dist", "distro-upgrade"), Version: upgradeVersion, Out: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ISOs: %s", time.Since(start).Round(100*time.Millisecond))
	return e
}

// testWriter sends build progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// pkgTool is how the systemd scenario installs and inspects the package:
// with dpkg (install-debian.sh) or rpm (install-rhel.sh).
type pkgTool struct {
	// format is the package format (packages.FormatVersion).
	format string
	// upgrade is the installer the admin runs for the upgrade.
	upgrade string
	// state prints the package's state and version.
	state string
	// installed is state's output when version v is installed.
	installed func(t *testing.T, v string) string
	// removed is state's output after uninstall.sh (config kept).
	removed string
	// purged accepts state's output after uninstall.sh --purge.
	purged func(string) bool
}

var dpkgTool = pkgTool{
	format:  "deb",
	upgrade: "bash /media/cdrom/install-debian.sh",
	state:   `dpkg-query -W -f='${Status} ${Version}' kvmmanager-agent 2>/dev/null`,
	installed: func(t *testing.T, v string) string {
		return "install ok installed " + formatVersion(t, "deb", v)
	},
	removed: "deinstall ok config-files",
	purged:  func(s string) bool { return s == "" || strings.HasPrefix(s, "unknown ok not-installed") },
}

var rpmTool = pkgTool{
	format:  "rpm",
	upgrade: "bash /media/cdrom/install-rhel.sh",
	state:   `rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}' kvmmanager-agent 2>&1`,
	installed: func(t *testing.T, v string) string {
		return "kvmmanager-agent " + formatVersion(t, "rpm", v) + "-1"
	},
	removed: "package kvmmanager-agent is not installed",
	purged:  func(s string) bool { return s == "package kvmmanager-agent is not installed" },
}

// removedState is the package state after uninstall.sh: dpkg keeps the
// package's conffiles registered ("config-files"), rpm forgets it.
func (p pkgTool) removedState(t *testing.T, v string) string {
	if p.format == "deb" {
		return p.removed + " " + formatVersion(t, "deb", v)
	}
	return p.removed
}

// formatVersion is a semantic version in a package format's syntax.
func formatVersion(t *testing.T, format, v string) string {
	t.Helper()
	d, err := packages.FormatVersion(format, v)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// scenarioSystemd: the admin's first-boot install (install-debian.sh, or
// install.sh choosing install-rhel.sh on the rpm guest); udev activation;
// reboot; upgrade keeping an edited config; uninstall, then purge; finally
// the shutdown method powers the VM off.
func scenarioSystemd(t *testing.T, e *env, s suite, img *distro.Image) {
	g := boot(t, e, img, bootOptions{Timeout: 40 * time.Minute})
	g.waitAgent(12 * time.Minute)
	t.Logf("boot to first answer: %s", time.Since(g.start).Round(100*time.Millisecond))
	inst := g.installed()
	if s.pkg.format == "rpm" && !strings.Contains(inst.Output, "Using install-rhel.sh") {
		t.Errorf("install.sh did not choose install-rhel.sh:\n%s", inst.Output)
	}

	ctx := context.Background()
	sys, err := g.c.SystemInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sys.OSName != s.osName || sys.OSVersion != s.osVersion {
		t.Errorf("get_system_info: os_name %q os_version %q, want %q %q", sys.OSName, sys.OSVersion, s.osName, s.osVersion)
	}
	if sys.Hostname != "kvmtest-"+s.spec.Name {
		t.Errorf("get_system_info hostname %q", sys.Hostname)
	}
	t.Logf("agent on %s: os_name %q os_version %q kernel %q; %s", s.name, sys.OSName, sys.OSVersion,
		sys.KernelVersion, g.output("systemctl --version | head -n 1"))
	info, err := g.c.AgentInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != e.baseVersion {
		t.Errorf("get_agent_info version %q, want %q", info.Version, e.baseVersion)
	}
	if st := g.output(s.pkg.state); st != s.pkg.installed(t, e.baseVersion) {
		t.Errorf("package state %q, want %q", st, s.pkg.installed(t, e.baseVersion))
	}
	if s.pkg.format == "rpm" {
		// The database is where Rocky keeps it, and nothing differs from
		// the package yet.
		if got := g.output("test -f /var/lib/rpm/rpmdb.sqlite && echo present"); got != "present" {
			t.Errorf("no rpm database in /var/lib/rpm")
		}
		if r := g.exec("rpm -V kvmmanager-agent"); r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("rpm -V after the install: exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
		}
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
	g.run(`sed -i 's/"command_timeout_seconds": *30/"command_timeout_seconds": 45/' ` + agentConfig)
	edited := g.run("sha256sum " + agentConfig)
	if !strings.Contains(g.run("cat "+agentConfig), `"command_timeout_seconds": 45`) {
		t.Fatalf("the sed edit of %s did not apply", agentConfig)
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
		`'mount -o ro /dev/sr0 /media/cdrom && cd /root && ` + s.pkg.upgrade + `'`)
	g.poll("the upgraded agent", `systemctl show -p SubState --value kvmtest-upgrade`, 6*time.Minute,
		func(s string) bool { return s == "exited" || s == "failed" })
	upg := g.run("systemctl show -p Result -p ExecMainStatus kvmtest-upgrade")
	t.Logf("upgrade unit: %s; its log:\n%s", strings.ReplaceAll(upg, "\n", " "), indent(g.output("journalctl -u kvmtest-upgrade -o cat --no-pager")))
	if p := distro.SystemdProperties(upg); p["Result"] != "success" || p["ExecMainStatus"] != "0" {
		t.Fatalf("the upgrade failed: %s", upg)
	}
	waitVersion(t, g, upgradeVersion)
	if st := g.output(s.pkg.state); st != s.pkg.installed(t, upgradeVersion) {
		t.Errorf("package state after the upgrade %q, want %q", st, s.pkg.installed(t, upgradeVersion))
	}
	if after := g.run("sha256sum " + agentConfig); after != edited {
		t.Errorf("the edited config changed in the upgrade:\n%s", g.run("cat "+agentConfig))
	}
	if got := g.output("ls /etc/kvmmanager-agent"); got != "config.json" {
		t.Errorf("/etc/kvmmanager-agent after the upgrade holds %q, want only config.json", got)
	}
	if got := g.output("systemctl is-active kvmmanager-agent"); got != "active" {
		t.Errorf("after the upgrade: is-active %q", got)
	}
	if s.pkg.format == "rpm" {
		// Only the edited %config file differs from the package.
		r := g.exec("rpm -V kvmmanager-agent")
		if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); len(lines) != 1 || !strings.HasSuffix(lines[0], " c "+agentConfig) {
			t.Errorf("rpm -V after the edit and upgrade: want the config alone marked changed, got exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr)
		}
	}

	// 4. Uninstall. The agent goes away with it, so a transient unit runs
	// uninstall.sh and then starts the CD's own agent binary (not the
	// installed one) as an observer, through which the host looks at what
	// uninstall.sh left behind and runs --purge.
	g.run(`systemd-run --no-block --unit kvmtest-uninstall /bin/sh -c '` +
		`sh /media/cdrom/uninstall.sh >/run/kvmtest-uninstall.log 2>&1; echo $? >/run/kvmtest-uninstall.rc; ` +
		`exec systemd-run --unit kvmtest-observer /media/cdrom/linux-amd64/kvmmanager-agent --config /media/cdrom/config.json'`)
	g.poll("the observer agent", "systemctl is-active kvmtest-observer", 4*time.Minute,
		func(s string) bool { return s == "active" })
	unLog := g.run("cat /run/kvmtest-uninstall.log")
	t.Logf("uninstall.sh exit %s:\n%s", g.run("cat /run/kvmtest-uninstall.rc"), indent(unLog))
	if rc := g.run("cat /run/kvmtest-uninstall.rc"); rc != "0" {
		t.Fatalf("uninstall.sh exit %s", rc)
	}
	if s.pkg.format == "rpm" {
		// rpm -e saves an edited %config(noreplace) file as .rpmsave, as
		// on Fedora and RHEL; uninstall.sh puts it back in place.
		if !strings.Contains(unLog, "(rpm had renamed it to .rpmsave)") {
			t.Errorf("uninstall.sh did not report rpm -e's config.json.rpmsave")
		}
	}
	checks := []struct{ what, script, want string }{
		{"service unit gone", "systemctl show -p LoadState --value kvmmanager-agent", "not-found"},
		{"service stopped", "systemctl is-active kvmmanager-agent", "inactive"},
		{"binary gone", "test -e /usr/bin/kvmmanager-agent && echo present || echo absent", "absent"},
		{"unit file gone", "test -e /usr/lib/systemd/system/kvmmanager-agent.service && echo present || echo absent", "absent"},
		{"udev rule gone", "test -e /usr/lib/udev/rules.d/60-kvmmanager-agent.rules && echo present || echo absent", "absent"},
		{"package removed, config kept", s.pkg.state, s.pkg.removedState(t, upgradeVersion)},
		{"edited config kept in place", "sha256sum " + agentConfig, edited},
		{"nothing else in the config directory", "ls /etc/kvmmanager-agent", "config.json"},
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
	if st := g.output(s.pkg.state); !s.pkg.purged(st) {
		t.Errorf("after --purge: package state %q", st)
	}

	// 5. The shutdown method (answered by the observer, the same binary)
	// powers the VM off and QEMU exits by itself. The scenario shares this
	// boot instead of booting a VM for it alone.
	shutdownThroughAgent(t, g)
}

// shutdownThroughAgent calls the shutdown method and waits for QEMU to exit
// by itself (no watchdog kill) after the kernel powered down.
func shutdownThroughAgent(t *testing.T, g *guest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, err := g.c.Shutdown(ctx, protocol.PowerParams{})
	cancel()
	if err != nil || !res.Initiated {
		t.Fatalf("shutdown: %+v, %v", res, err)
	}
	start := time.Now()
	g.waitPowerOff(6*time.Minute, "the shutdown call")
	t.Logf("shutdown call to QEMU exit: %s", time.Since(start).Round(100*time.Millisecond))
	con, err := os.ReadFile(g.console)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(con), "reboot: Power down") {
		t.Errorf("the console log %s does not show the kernel powering down", g.console)
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
	// systemd 254 and later (Debian 13) check a rule file's syntax with
	// udevadm verify; older ones only show in udevd's log (above).
	verify := `v=$(systemctl --version | head -n1 | cut -d' ' -f2); ` +
		`if [ "$v" -ge 254 ]; then udevadm verify /usr/lib/udev/rules.d/60-kvmmanager-agent.rules >/tmp/udev-verify 2>&1 && echo verified || cat /tmp/udev-verify; else echo "systemd $v"; fi`
	switch s := g.output(verify); {
	case s == "verified":
		t.Logf("udevadm verify: the agent's rule passes")
	case strings.HasPrefix(s, "systemd ") && !strings.Contains(s, "\n"):
		t.Logf("udevadm verify: not in %s (needs 254)", s)
	default:
		t.Errorf("udevadm verify 60-kvmmanager-agent.rules:\n%s", s)
	}
}

// waitVersion waits until get_agent_info reports version.
func waitVersion(t *testing.T, g *guest, version string) protocol.AgentInfo {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
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

// scenarioOpenRC: install.sh's generic path on Debian with OpenRC.
func scenarioOpenRC(t *testing.T, e *env, s suite, img *distro.Image) {
	g := boot(t, e, img, bootOptions{Timeout: 30 * time.Minute})
	g.waitAgent(12 * time.Minute)
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
	if sys.OSName != s.osName || sys.OSVersion != s.osVersion {
		t.Errorf("get_system_info: os_name %q os_version %q, want %q %q", sys.OSName, sys.OSVersion, s.osName, s.osVersion)
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
	// The shutdown method under OpenRC on sysvinit, sharing this boot.
	shutdownThroughAgent(t, g)
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
	r := g.waitReport("the 60 s observation", 8*time.Minute, func(r distro.Report) bool { return r.Has("observe-done") })
	return g, r
}

// scenarioNoPort: the systemd image without the agent's port. After the
// install and 60 s the admin dumps the service's state and journal to the
// report and powers off.
func scenarioNoPort(t *testing.T, e *env, _ suite, img *distro.Image) {
	g, r := observeWithoutPort(t, e, img, 15*time.Minute)
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
	g.waitPowerOff(6*time.Minute, "the observation")
}

// scenarioOpenRCNoPort: the OpenRC image without the agent's port. The
// service starts anyway (OpenRC has no device activation); the agent must
// log the missing port once and keep looking for it calmly, without
// supervise-daemon respawning it.
func scenarioOpenRCNoPort(t *testing.T, e *env, _ suite, img *distro.Image) {
	g, r := observeWithoutPort(t, e, img, 15*time.Minute)
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
	g.waitPowerOff(6*time.Minute, "the observation")
}
