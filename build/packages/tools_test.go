package packages

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// lintianAccepted are the lintian warnings accepted for the .deb, and why.
var lintianAccepted = map[string]string{
	// The scripts call systemctl only when systemd runs ([ -d /run/systemd/system ]),
	// as nfpm has no deb-systemd-helper step.
	"maintainer-script-calls-systemctl": "guarded systemctl calls in postinst/prerm",
	// The agent documents itself with --help and the README.
	"no-manual-page": "no man page",
	// The unit is started by udev through the port's device unit (the
	// qemu-guest-agent pattern), not by multi-user.target.
	"systemd-service-file-refers-to-unusual-wantedby-target": "device-activated unit",
}

// realPackages builds the packages around a real static binary, as lintian
// and rpm judge the binary too.
func realPackages(t *testing.T) []Package {
	t.Helper()
	root, bins := testRoot(t)
	mod := t.TempDir()
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module x\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), []byte("package main\n\nfunc main() { println(\"agent\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for arch, p := range bins {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", p, ".")
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build for %s: %v\n%s", arch, err, out)
		}
	}
	pkgs, err := Build(context.Background(), Options{Root: root, Dist: t.TempDir(), Info: testInfo, Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func pick(pkgs []Package, format string) []Package {
	var out []Package
	for _, p := range pkgs {
		if p.Format == format {
			out = append(out, p)
		}
	}
	return out
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func wantLines(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

func TestDebWithDpkgAndLintian(t *testing.T) {
	testenv.NeedCommands(t, "dpkg-deb", "lintian")
	debs := pick(realPackages(t), "deb")
	for _, p := range debs {
		t.Run(p.Arch, func(t *testing.T) {
			info := run(t, "dpkg-deb", "-I", p.Path)
			wantLines(t, "dpkg-deb -I", info, "Package: kvmmanager-agent", "Version: 0.0.0~dev+abc1234",
				"Architecture: "+p.Arch, "conffiles", "postinst", "prerm", "postrm")
			contents := run(t, "dpkg-deb", "-c", p.Path)
			wantLines(t, "dpkg-deb -c", contents,
				"-rwxr-xr-x root/root", "./usr/bin/kvmmanager-agent",
				"-rw-r--r-- root/root", "./etc/kvmmanager-agent/config.json",
				"./usr/lib/systemd/system/kvmmanager-agent.service",
				"./usr/lib/udev/rules.d/60-kvmmanager-agent.rules",
				"./usr/share/doc/kvmmanager-agent/copyright",
				"2023-11-14 22:13") // SOURCE_DATE_EPOCH
			if conf := run(t, "dpkg-deb", "-f", p.Path, "Version"); strings.TrimSpace(conf) != "0.0.0~dev+abc1234" {
				t.Errorf("dpkg-deb -f Version = %q", conf)
			}
		})
	}

	// One lintian run judges every .deb: its start-up (about 4 s of CPU)
	// is most of its cost. It exits non-zero on errors; judge its tags
	// ourselves.
	args := []string{"--tag-display-limit", "0"}
	for _, p := range debs {
		args = append(args, p.Path)
	}
	out, err := exec.Command("lintian", args...).CombinedOutput()
	errs := 0
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || len(fields[0]) != 2 || fields[0][1] != ':' {
			continue
		}
		switch sev, tag := fields[0], fields[2]; sev {
		case "E:":
			errs++
			t.Errorf("lintian error: %s", line)
		case "W:":
			if _, ok := lintianAccepted[tag]; !ok {
				t.Errorf("lintian warning not accepted (fix it or add it to lintianAccepted with the reason): %s", line)
			}
		}
	}
	if err != nil && errs == 0 {
		t.Errorf("lintian %s: %v without an error tag (it did not judge the packages):\n%s", strings.Join(args, " "), err, out)
	}
}

func TestRPMWithRPM(t *testing.T) {
	testenv.NeedCommands(t, "rpm")
	for _, p := range pick(realPackages(t), "rpm") {
		t.Run(p.Arch, func(t *testing.T) {
			arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[p.Arch]
			info := run(t, "rpm", "-qpi", p.Path)
			wantLines(t, "rpm -qpi", info, "Name        : kvmmanager-agent", "Version     : 0.0.0~dev+abc1234",
				"Architecture: "+arch, "License     : Apache-2.0", "Build Host  : kvmmanager-build", "Build Date  : Tue Nov 14 22:13:20 2023")
			list := run(t, "rpm", "-qplv", p.Path)
			wantLines(t, "rpm -qplv", list,
				"-rwxr-xr-x    1 root     root", "/usr/bin/kvmmanager-agent",
				"/etc/kvmmanager-agent/config.json",
				"/usr/lib/systemd/system/kvmmanager-agent.service",
				"/usr/lib/udev/rules.d/60-kvmmanager-agent.rules")
			if conf := strings.Fields(run(t, "rpm", "-qpc", p.Path)); !slices.Equal(conf, []string{"/etc/kvmmanager-agent/config.json"}) {
				t.Errorf("rpm -qpc = %v, want the config only", conf)
			}
			scripts := run(t, "rpm", "-qp", "--scripts", p.Path)
			wantLines(t, "rpm --scripts", scripts, "postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet")
			// The scriptlets need a shell: an install into an empty root must
			// pull one in first.
			if req := strings.Fields(run(t, "rpm", "-qp", "--requires", p.Path)); !slices.Contains(req, "/bin/sh") {
				t.Errorf("rpm -qp --requires = %v, want /bin/sh for the scriptlets", req)
			}
			wantLines(t, "rpm -K", run(t, "rpm", "-K", p.Path), "digests OK")
		})
	}
}
