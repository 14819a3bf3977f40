package installtest

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// scripts are every shell script this project ships, with the shell that
// runs it: bash for the Debian/RHEL installers, POSIX sh for everything that
// must also run under dash or busybox ash (OpenRC script included).
var scripts = []struct {
	path, shell string
}{
	{"installers/install.sh", "sh"},
	{"installers/install-debian.sh", "bash"},
	{"installers/install-rhel.sh", "bash"},
	{"installers/install-alpine.sh", "sh"},
	{"installers/uninstall.sh", "sh"},
	{"installers/install-common.sh", "sh"}, // sourced by all of the above, so POSIX
	{"packaging/openrc/kvmmanager-agent.initd", "sh"},
	{"packaging/openrc/kvmmanager-agent.confd", "sh"},
	{"packaging/scripts/deb/postinst", "sh"},
	{"packaging/scripts/deb/prerm", "sh"},
	{"packaging/scripts/deb/postrm", "sh"},
	{"packaging/scripts/rpm/postinstall.sh", "sh"},
	{"packaging/scripts/rpm/preremove.sh", "sh"},
	{"packaging/scripts/rpm/postremove.sh", "sh"},
	{"packaging/scripts/apk/post-install.sh", "sh"},
	{"packaging/scripts/apk/post-upgrade.sh", "sh"},
	{"packaging/scripts/apk/pre-deinstall.sh", "sh"},
}

// TestScriptsListed keeps the table above complete: a new script under
// installers/ or packaging/scripts/ must be added to it.
func TestScriptsListed(t *testing.T) {
	listed := map[string]bool{}
	for _, s := range scripts {
		listed[s.path] = true
	}
	for _, pattern := range []string{"installers/*", "packaging/scripts/*/*", "packaging/openrc/*"} {
		matches, err := filepath.Glob(repoPath(pattern))
		if err != nil {
			t.Fatalf("glob %s: %v", pattern, err)
		}
		for _, m := range matches {
			rel, err := filepath.Rel(repoRoot, m)
			if err != nil {
				t.Fatalf("relative path of %s: %v", m, err)
			}
			if strings.HasSuffix(rel, ".cmd") {
				continue // Windows batch files (install-windows.cmd), not shell scripts
			}
			if !listed[filepath.ToSlash(rel)] {
				t.Errorf("%s is not in the scripts table of lint_test.go", rel)
			}
		}
	}
}

// TestShellcheck checks every script with shellcheck in the dialect of the
// shell that runs it: one shellcheck per dialect (its start-up is most of
// its cost), whose findings name the file.
func TestShellcheck(t *testing.T) {
	testenv.NeedCommands(t, "shellcheck")
	byShell := map[string][]string{}
	for _, s := range scripts {
		byShell[s.shell] = append(byShell[s.shell], repoPath(s.path))
	}
	for _, shell := range slices.Sorted(maps.Keys(byShell)) {
		paths := byShell[shell]
		t.Run(shell, func(t *testing.T) {
			args := append([]string{"--shell=" + shell, "--external-sources"}, paths...)
			out, err := exec.Command("shellcheck", args...).CombinedOutput()
			if err != nil {
				t.Errorf("shellcheck --shell=%s: %v\n%s", shell, err, out)
			}
		})
	}
}

// TestShellSyntax parses every POSIX script with the shells that run it:
// dash (Debian's /bin/sh) and busybox ash (Alpine's).
func TestShellSyntax(t *testing.T) {
	testenv.NeedCommands(t, "dash", "busybox")
	for _, s := range scripts {
		shells := [][]string{{"bash", "-n"}}
		if s.shell == "sh" {
			shells = [][]string{{"dash", "-n"}, {"busybox", "sh", "-n"}}
		}
		for _, sh := range shells {
			args := append(sh[1:], repoPath(s.path))
			if out, err := exec.Command(sh[0], args...).CombinedOutput(); err != nil {
				t.Errorf("%s %s: %v\n%s", strings.Join(sh, " "), s.path, err, out)
			}
		}
	}
}

// hostUnits is where the host's systemd keeps the targets and slices that
// the verified unit implicitly depends on (sysinit.target, system.slice...).
const hostUnits = "/usr/lib/systemd/system"

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the unit inside a
// temporary root holding the agent binary at /usr/bin, so that verify also
// checks ExecStart points at an executable, and the host's targets and
// slices. Any output (a warning about an unknown key, say) fails the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	testenv.NeedCommands(t, "systemd-analyze")
	testenv.NeedFile(t, filepath.Join(hostUnits, "sysinit.target"))
	root := t.TempDir()
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	bin := filepath.Join(root, "usr/bin/kvmmanager-agent")
	for _, d := range []string{unitDir, filepath.Dir(bin)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"*.target", "*.slice"} {
		units, err := filepath.Glob(filepath.Join(hostUnits, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range units {
			copyFile(t, u, filepath.Join(unitDir, filepath.Base(u)), 0o644)
		}
	}
	unitPath := filepath.Join(unitDir, "kvmmanager-agent.service")
	copyFile(t, repoPath("packaging/systemd/kvmmanager-agent.service"), unitPath, 0o644)
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--generators=no", "--root="+root, unitPath)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}

	// The same check must catch a broken ExecStart, or it proves nothing.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("systemd-analyze", "verify", "--man=no", "--generators=no", "--root="+root, unitPath).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "kvmmanager-agent") {
		t.Fatalf("systemd-analyze verify accepted a unit whose ExecStart binary is missing:\n%s", out)
	}
}

// copyFile copies src to dst with mode, failing t on error.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatalf("write %s: %v", dst, err)
	}
}
