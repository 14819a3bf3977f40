//go:build vmtest

package installtest

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// apkPkgver reads pkgver from the .PKGINFO of an .apk (concatenated gzip
// streams; the control archive with .PKGINFO comes first).
func apkPkgver(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("gunzip %s: %v", p, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if h.Name != ".PKGINFO" {
			continue
		}
		sc := bufio.NewScanner(tr)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "pkgver = "); ok {
				return v
			}
		}
	}
	t.Fatalf("%s has no pkgver in .PKGINFO", p)
	return ""
}

// TestAlpineBusybox runs install-alpine.sh --dry-run under busybox sh (the
// shell and tools of Alpine), from a directory other than the disc, with and
// without an apk on PATH. The fake apk answers only `apk info -v`, the one
// apk command a dry run makes; busybox tar reads the version out of the
// real .apk. It builds the real disc (every binary and package), so it has
// the build tag vmtest like the chroot tests that share that disc: plain go
// test skips it, go tool mage test runs it.
func TestAlpineBusybox(t *testing.T) {
	testenv.NeedCommands(t, "busybox")
	disc := isoTree(t, newVersion)
	apk := filepath.Join(disc, "packages", hostArch(), "kvmmanager-agent.apk")
	pkgver := apkPkgver(t, apk)

	fakeBin := t.TempDir()
	fakeApk := `#!/bin/sh
[ "$1 $2" = "info -v" ] || { echo "fake apk: unexpected: $*" >&2; exit 1; }
echo busybox-1.36.1-r0
[ -n "${FAKE_APK_INSTALLED:-}" ] && echo "kvmmanager-agent-$FAKE_APK_INSTALLED"
exit 0
`
	if err := os.WriteFile(filepath.Join(fakeBin, "apk"), []byte(fakeApk), 0o755); err != nil {
		t.Fatal(err)
	}
	noApk := t.TempDir()

	cases := []struct {
		name, path, installed string
		want                  []string
	}{
		{"fresh install", fakeBin, "", []string{
			"arch=" + machine(t) + " (" + hostArch() + ")",
			"Installing kvmmanager-agent " + pkgver,
			"would run: apk add --allow-untrusted " + apk,
			"rc-service kvmmanager-agent status",
		}},
		{"same version installed", fakeBin, pkgver, []string{
			"kvmmanager-agent " + pkgver + " is already installed; nothing to install.",
		}},
		{"older version installed", fakeBin, "0.9.0-r0", []string{
			"would run: apk add --allow-untrusted " + apk,
			"(was: 0.9.0-r0)",
		}},
		{"no apk falls back to copying", noApk, "", []string{
			"apk not found: installing by copying files instead.",
			"would install " + filepath.Join(disc, "linux-"+hostArch(), "kvmmanager-agent") + " as /usr/bin/kvmmanager-agent",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command("busybox", "sh", filepath.Join(disc, "install-alpine.sh"), "--dry-run")
			cmd.Dir = t.TempDir()
			cmd.Env = []string{"PATH=" + c.path + ":/usr/bin:/bin", "FAKE_APK_INSTALLED=" + c.installed}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("busybox sh install-alpine.sh --dry-run: %v\n%s", err, out)
			}
			wantContains(t, string(out), c.want...)
			wantDryRunEnd(t, string(out))
			if !strings.Contains(string(out), "org.kvmmanager.agent.0") {
				t.Errorf("no port report:\n%s", out)
			}
		})
	}
}

// machine is `uname -m` of this host.
func machine(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("uname", "-m").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
