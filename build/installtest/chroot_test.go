//go:build vmtest

package installtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/distro"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// The Debian chroot the installers run in: minbase plus OpenRC (installed,
// not running, for the generic path) and rpm (Debian's rpm installs .rpm
// files, so install-rhel.sh and the rpm scriptlets run for real).
const (
	chrootSuite  = "bookworm"
	chrootMirror = "http://deb.debian.org/debian"
	// CacheEnv overrides the directory where the chroot tarball is kept.
	CacheEnv = "KVMMANAGER_TEST_CACHE"
)

var chrootInclude = []string{"openrc", "rpm"}

var tarballMu sync.Mutex

// chrootTarball returns the cached mmdebstrap tarball, building it on first
// use. Its name carries a hash of everything that goes into it.
func chrootTarball(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommands(t, "mmdebstrap", "unshare", "chroot", "tar", "mount")
	tarballMu.Lock()
	defer tarballMu.Unlock()
	dir := os.Getenv(CacheEnv)
	if dir == "" {
		dir = "/var/cache/kvmmanager-test"
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{"installtest/1", chrootSuite, "minbase", chrootMirror, strings.Join(chrootInclude, ",")}, "\n")))
	p := filepath.Join(dir, fmt.Sprintf("installtest-%s-%s.tar", chrootSuite, hex.EncodeToString(sum[:6])))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create %s: %v", dir, err)
	}
	tmp := p + ".partial.tar"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--mode=root",
		"--include="+strings.Join(chrootInclude, ","), chrootSuite, tmp, chrootMirror)
	t.Logf("building the test chroot (cached as %s): %s", p, strings.Join(cmd.Args, " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatalf("rename %s: %v", tmp, err)
	}
	return p
}

// newChroot unpacks a fresh copy of the cached chroot.
func newChroot(t *testing.T) string {
	t.Helper()
	tarball := chrootTarball(t)
	root := t.TempDir()
	if out, err := exec.Command("tar", "-xf", tarball, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", tarball, err, out)
	}
	if err := os.MkdirAll(filepath.Join(root, "media/cdrom"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// chrootRun runs script with /bin/sh in root, in a private mount namespace
// where the disc tree is bind-mounted read-only on /media/cdrom and /proc is
// mounted, with a clean environment. user is "" for root.
func chrootRun(root, disc, user, script string) (string, error) {
	const outer = `set -e
mount --bind "$2" "$1/media/cdrom"
mount -o remount,bind,ro "$1/media/cdrom"
mount -t proc proc "$1/proc"
exec chroot $3 "$1" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 /bin/sh -c "$4"`
	userspec := ""
	if user != "" {
		userspec = "--userspec=" + user
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", outer, "sh", root, disc, userspec, script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs script in the chroot as root and fails t when it fails.
func must(t *testing.T, root, disc, script string) string {
	t.Helper()
	out, err := chrootRun(root, disc, "", script)
	if err != nil {
		t.Fatalf("in chroot: %s: %v\n%s", script, err, out)
	}
	t.Logf("$ %s\n%s", script, out)
	return out
}

func wantPaths(t *testing.T, root string, exist bool, paths ...string) {
	t.Helper()
	for _, p := range paths {
		_, err := os.Lstat(filepath.Join(root, p))
		if exist && err != nil {
			t.Errorf("%s missing: %v", p, err)
		}
		if !exist && err == nil {
			t.Errorf("%s still exists", p)
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snapshot records mode, size, mtime and content hash of every file under the
// given chroot paths, to show a second run changed nothing.
func snapshot(t *testing.T, root string, paths ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range paths {
		base := filepath.Join(root, p)
		err := filepath.WalkDir(base, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			fi, err := os.Lstat(q)
			if err != nil {
				return err
			}
			var sum [32]byte
			if fi.Mode().IsRegular() {
				sum = sha256.Sum256(readFile(t, q))
			}
			out[q] = fmt.Sprintf("%v %d %d %x", fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), sum[:6])
			return nil
		})
		if err != nil {
			t.Fatalf("snapshot %s: %v", base, err)
		}
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("second run changed %s: %q -> %q", k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("second run created %s", k)
		}
	}
}

// installedPaths are where the agent's files live, for snapshots.
var installedPaths = []string{
	"usr/bin/kvmmanager-agent", "etc/kvmmanager-agent", "usr/lib/systemd/system/kvmmanager-agent.service",
	"usr/lib/udev/rules.d/60-kvmmanager-agent.rules", "etc/init.d/kvmmanager-agent",
	"etc/conf.d/kvmmanager-agent", "etc/runlevels", "var/lib/dpkg/status", "var/lib/dpkg/info",
}

const (
	configPath = "etc/kvmmanager-agent/config.json"
	editConfig = `sed -i 's/"command_timeout_seconds": 30/"command_timeout_seconds": 45/' /etc/kvmmanager-agent/config.json && grep -q '"command_timeout_seconds": 45' /etc/kvmmanager-agent/config.json`
	portMarker = "<target type='virtio' name='org.kvmmanager.agent.0'/>"
)

// binaryName is the agent of this machine's architecture on the disc.
func binaryName() string { return "linux-" + hostArch() + "/kvmmanager-agent" }

func wantEdited(t *testing.T, root string) {
	t.Helper()
	if b := readFile(t, filepath.Join(root, configPath)); !bytes.Contains(b, []byte(`"command_timeout_seconds": 45`)) {
		t.Errorf("the admin's config edit was lost:\n%s", b)
	}
}

func wantSameFile(t *testing.T, got, want string) {
	t.Helper()
	if !bytes.Equal(readFile(t, got), readFile(t, want)) {
		t.Errorf("%s differs from %s", got, want)
	}
}

// TestChrootPackages runs the native-package installers of the disc from
// /root in a Debian chroot without systemd: install, install again (no
// change), edit the config, upgrade to the next disc (edit kept), uninstall
// (config kept), purge (config gone), uninstall again (nothing to do).
func TestChrootPackages(t *testing.T) {
	cases := []struct {
		name, installer string
		version         string // query printing the installed version, empty output when absent
		fresh, again    string
		afterRemove     string // query result after a plain uninstall
		// rpmProvides are recorded in root's rpm database first, as a real
		// rpm system's base packages provide them (the rpm requires /bin/sh).
		rpmProvides []string
	}{
		{
			name: "debian", installer: "bash /media/cdrom/install-debian.sh",
			version:     `dpkg-query -W -f='${Status} ${Version}' kvmmanager-agent 2>/dev/null || true`,
			fresh:       "install ok installed " + oldVersion,
			again:       "install ok installed " + newVersion,
			afterRemove: "deinstall ok config-files " + newVersion,
		},
		{
			name: "rhel", installer: "bash /media/cdrom/install-rhel.sh",
			version:     `rpm -q --qf '%{VERSION}' kvmmanager-agent 2>/dev/null | grep -v 'not installed' || true`,
			fresh:       oldVersion,
			again:       newVersion,
			afterRemove: "",
			rpmProvides: []string{"/bin/sh"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := newChroot(t)
			if len(c.rpmProvides) > 0 {
				// Debian's rpm keeps root's database in ~/.rpmdb.
				if err := distro.RecordRPMProvides(context.Background(), io.Discard, root, "/root/.rpmdb", c.rpmProvides); err != nil {
					t.Fatal(err)
				}
			}
			v1, v2 := isoTree(t, oldVersion), isoTree(t, newVersion)

			out := must(t, root, v1, "cd /root && "+c.installer)
			wantContains(t, out, "systemd is not running", portMarker)
			if got := strings.TrimSpace(must(t, root, v1, c.version)); got != c.fresh {
				t.Fatalf("after install: %q, want %q", got, c.fresh)
			}
			wantPaths(t, root, true, "usr/bin/kvmmanager-agent", configPath,
				"usr/lib/systemd/system/kvmmanager-agent.service", "usr/lib/udev/rules.d/60-kvmmanager-agent.rules")
			wantSameFile(t, filepath.Join(root, "usr/bin/kvmmanager-agent"), filepath.Join(v1, binaryName()))
			wantSameFile(t, filepath.Join(root, configPath), repoPath("packaging/config.json"))

			before := snapshot(t, root, installedPaths...)
			out = must(t, root, v1, "cd / && "+c.installer)
			wantContains(t, out, "already installed", "Nothing changed")
			sameSnapshot(t, before, snapshot(t, root, installedPaths...))

			must(t, root, v1, editConfig)
			must(t, root, v2, "cd /tmp && "+c.installer)
			if got := strings.TrimSpace(must(t, root, v2, c.version)); got != c.again {
				t.Fatalf("after upgrade: %q, want %q", got, c.again)
			}
			wantSameFile(t, filepath.Join(root, "usr/bin/kvmmanager-agent"), filepath.Join(v2, binaryName()))
			wantEdited(t, root)

			out = must(t, root, v2, "cd /root && sh /media/cdrom/uninstall.sh")
			wantContains(t, out, "removed the kvmmanager-agent package", "Kept /etc/kvmmanager-agent/config.json")
			if got := strings.TrimSpace(must(t, root, v2, c.version)); got != c.afterRemove {
				t.Errorf("after uninstall: %q, want %q", got, c.afterRemove)
			}
			wantPaths(t, root, false, "usr/bin/kvmmanager-agent", "usr/lib/systemd/system/kvmmanager-agent.service",
				"usr/lib/udev/rules.d/60-kvmmanager-agent.rules")
			wantEdited(t, root)

			must(t, root, v2, "cd /root && sh /media/cdrom/uninstall.sh --purge")
			if got := strings.TrimSpace(must(t, root, v2, c.version)); got != "" && !strings.HasPrefix(got, "unknown") && !strings.Contains(got, "not-installed") {
				t.Errorf("after purge: %q, want no package", got)
			}
			wantPaths(t, root, false, "etc/kvmmanager-agent")
			out = must(t, root, v2, "sh /media/cdrom/uninstall.sh --purge")
			wantContains(t, out, "not installed; nothing to do")
		})
	}
}

// TestChrootGeneric runs install.sh on Debian with OpenRC installed and no
// systemd: it must take the generic path (copy the binary, config, OpenRC
// script and conf.d, add the service to the default runlevel), change
// nothing when run again, keep the config on upgrade, and uninstall cleanly.
// The same path is taken by install-debian.sh when dpkg is missing.
func TestChrootGeneric(t *testing.T) {
	cases := []struct{ name, setup, installer, marker string }{
		{"install.sh", "true", "sh /media/cdrom/install.sh", "copying files"},
		{"no-dpkg", "mv /usr/bin/dpkg /usr/bin/dpkg.hidden", "bash /media/cdrom/install-debian.sh", "dpkg not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := newChroot(t)
			v1, v2 := isoTree(t, oldVersion), isoTree(t, newVersion)
			must(t, root, v1, c.setup)

			out := must(t, root, v1, "cd /root && "+c.installer)
			wantContains(t, out, c.marker, "OpenRC is not running", "rc-service kvmmanager-agent status", portMarker)
			wantSameFile(t, filepath.Join(root, "usr/bin/kvmmanager-agent"), filepath.Join(v1, binaryName()))
			wantSameFile(t, filepath.Join(root, configPath), repoPath("packaging/config.json"))
			wantSameFile(t, filepath.Join(root, "etc/init.d/kvmmanager-agent"), repoPath("packaging/openrc/kvmmanager-agent.initd"))
			wantSameFile(t, filepath.Join(root, "etc/conf.d/kvmmanager-agent"), repoPath("packaging/openrc/kvmmanager-agent.confd"))
			wantPaths(t, root, true, "etc/runlevels/default/kvmmanager-agent")
			wantPaths(t, root, false, "usr/lib/systemd/system/kvmmanager-agent.service")
			if fi, err := os.Stat(filepath.Join(root, "etc/init.d/kvmmanager-agent")); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("init script mode: %v %v, want 0755", fi.Mode(), err)
			}

			before := snapshot(t, root, installedPaths...)
			out = must(t, root, v1, "cd /tmp && "+c.installer)
			wantContains(t, out, "nothing changed")
			sameSnapshot(t, before, snapshot(t, root, installedPaths...))

			must(t, root, v1, editConfig)
			out = must(t, root, v2, c.installer)
			wantContains(t, out, "installed /usr/bin/kvmmanager-agent", "kept existing /etc/kvmmanager-agent/config.json")
			wantSameFile(t, filepath.Join(root, "usr/bin/kvmmanager-agent"), filepath.Join(v2, binaryName()))
			wantEdited(t, root)

			out = must(t, root, v2, "sh /media/cdrom/uninstall.sh")
			wantContains(t, out, "removed /usr/bin/kvmmanager-agent", "Kept /etc/kvmmanager-agent/config.json")
			wantPaths(t, root, false, "usr/bin/kvmmanager-agent", "etc/init.d/kvmmanager-agent", "etc/runlevels/default/kvmmanager-agent")
			wantPaths(t, root, true, configPath, "etc/conf.d/kvmmanager-agent")
			wantEdited(t, root)

			must(t, root, v2, "sh /media/cdrom/uninstall.sh --purge")
			wantPaths(t, root, false, "etc/kvmmanager-agent", "etc/conf.d/kvmmanager-agent")
		})
	}
}

// TestChrootDetection checks install.sh's choice and the installers'
// architecture and root checks, with --dry-run, in one chroot whose
// os-release, init system marker and `uname -m` each case changes.
func TestChrootDetection(t *testing.T) {
	root := newChroot(t)
	disc := isoTree(t, newVersion)
	const reset = "rm -rf /run/systemd /usr/local/bin/uname; ln -sf ../usr/lib/os-release /etc/os-release"
	fakeUname := func(m string) string {
		return fmt.Sprintf("printf '#!/bin/sh\\necho %s\\n' > /usr/local/bin/uname && chmod 755 /usr/local/bin/uname", m)
	}
	const systemd = "mkdir -p /run/systemd/system"
	osRelease := func(id, like string) string {
		return fmt.Sprintf("rm -f /etc/os-release && printf 'ID=%s\\nID_LIKE=\"%s\"\\n' > /etc/os-release", id, like)
	}
	cases := []struct {
		name, setup, cmd, user string
		fail                   bool
		want                   []string
	}{
		{"debian without systemd copies", "true", "sh /media/cdrom/install.sh --dry-run", "", false,
			[]string{"family=debian", "copying files", "would install /media/cdrom/" + binaryName() + " as /usr/bin/kvmmanager-agent"}},
		{"debian with systemd uses dpkg", systemd, "sh /media/cdrom/install.sh --dry-run", "", false,
			[]string{"Using install-debian.sh", "would run: dpkg --force-confdef --force-confold --install /media/cdrom/packages/" + hostArch() + "/kvmmanager-agent.deb"}},
		{"rocky with systemd uses rpm", systemd + " && " + osRelease("rocky", "rhel centos fedora"), "sh /media/cdrom/install.sh --dry-run", "", false,
			[]string{"family=rhel", "Using install-rhel.sh", "would run: rpm -Uvh --oldpackage /media/cdrom/packages/" + hostArch() + "/kvmmanager-agent.rpm"}},
		{"alpine without apk copies", osRelease("alpine", ""), "sh /media/cdrom/install.sh --dry-run", "", false,
			[]string{"Using install-alpine.sh", "apk not found", "would install"}},
		{"aarch64 picks arm64", fakeUname("aarch64"), "bash /media/cdrom/install-debian.sh --dry-run", "", false,
			[]string{"/media/cdrom/packages/arm64/kvmmanager-agent.deb"}},
		{"uninstall dry-run", "true", "sh /media/cdrom/uninstall.sh --dry-run", "", false,
			[]string{"kvmmanager-agent is not installed; nothing to do."}},
		{"riscv64 is refused", fakeUname("riscv64"), "sh /media/cdrom/install.sh", "", true,
			[]string{"unsupported architecture riscv64"}},
		{"riscv64 is refused by install-debian.sh", fakeUname("riscv64"), "bash /media/cdrom/install-debian.sh --dry-run", "", true,
			[]string{"unsupported architecture riscv64"}},
		{"non-root is refused", "true", "bash /media/cdrom/install-debian.sh", "nobody:nogroup", true,
			[]string{"must run as root"}},
		{"non-root uninstall is refused", "true", "sh /media/cdrom/uninstall.sh", "nobody:nogroup", true,
			[]string{"must run as root"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			must(t, root, disc, reset+" && "+c.setup)
			defer must(t, root, disc, reset)
			before := snapshot(t, root, installedPaths...)
			out, err := chrootRun(root, disc, c.user, "cd /tmp && "+c.cmd)
			if c.fail != (err != nil) {
				t.Fatalf("%s: err=%v, want failure=%v\n%s", c.cmd, err, c.fail, out)
			}
			wantContains(t, out, c.want...)
			if !c.fail && strings.Contains(c.cmd, "--dry-run") {
				wantDryRunEnd(t, out)
			}
			sameSnapshot(t, before, snapshot(t, root, installedPaths...))
		})
	}
}
