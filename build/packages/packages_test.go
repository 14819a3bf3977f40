package packages

import (
	"bytes"
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/testenv"
	"github.com/kvmmanager/guest-agent/build/version"
)

const testEpoch = 1700000000

var testInfo = version.Info{Version: "0.0.0-dev+abc1234", Commit: "abc1234", SourceDateEpoch: testEpoch}

// testRoot copies the repository's packaging/ into a temporary root (so the
// test can change script times) and writes a fake agent binary per arch.
func testRoot(t *testing.T) (root string, bins map[string]string) {
	t.Helper()
	root = t.TempDir()
	repo := testenv.RepoRoot(t)
	src := filepath.Join(repo, "packaging")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy packaging/: %v", err)
	}
	bins = map[string]string{}
	for _, a := range []string{"amd64", "arm64"} {
		b := make([]byte, 4096)
		rand.Read(b)
		p := filepath.Join(root, "agent-"+a)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		bins[a] = p
	}
	return root, bins
}

func build(t *testing.T, root string, bins map[string]string, dist string) []Package {
	t.Helper()
	pkgs, err := Build(context.Background(), Options{Root: root, Dist: dist, Info: testInfo, Binaries: bins})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestPackageContents(t *testing.T) {
	root, bins := testRoot(t)
	pkgs := build(t, root, bins, t.TempDir())
	if len(pkgs) != 6 {
		t.Fatalf("built %d packages, want 6", len(pkgs))
	}
	read := func(rel string) []byte {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type file struct {
		mode int64
		src  string // relative to root; "" for the agent binary
	}
	common := map[string]file{
		"/usr/bin/kvmmanager-agent":         {0o755, ""},
		"/etc/kvmmanager-agent/config.json": {0o644, "packaging/config.json"},
	}
	systemd := map[string]file{
		"/usr/lib/systemd/system/kvmmanager-agent.service": {0o644, "packaging/systemd/kvmmanager-agent.service"},
		"/usr/lib/udev/rules.d/60-kvmmanager-agent.rules":  {0o644, "packaging/udev/60-kvmmanager-agent.rules"},
	}
	debOnly := map[string]file{
		"/usr/share/doc/kvmmanager-agent/copyright":     {0o644, "packaging/deb/copyright"},
		"/usr/share/lintian/overrides/kvmmanager-agent": {0o644, "packaging/deb/lintian-overrides"},
	}
	openrc := map[string]file{
		"/etc/init.d/kvmmanager-agent": {0o755, "packaging/openrc/kvmmanager-agent.initd"},
		"/etc/conf.d/kvmmanager-agent": {0o644, "packaging/openrc/kvmmanager-agent.confd"},
	}
	tests := []struct {
		format    string
		files     []map[string]file
		conffiles []string
		scripts   map[string]string // name in package -> source
		control   map[string]map[string]string
	}{
		{
			format:    "deb",
			files:     []map[string]file{common, systemd, debOnly},
			conffiles: []string{"/etc/kvmmanager-agent/config.json"},
			scripts:   map[string]string{"postinst": "packaging/scripts/deb/postinst", "prerm": "packaging/scripts/deb/prerm", "postrm": "packaging/scripts/deb/postrm"},
			control: map[string]map[string]string{
				"amd64": {"Package": "kvmmanager-agent", "Version": "0.0.0~dev+abc1234", "Architecture": "amd64"},
				"arm64": {"Package": "kvmmanager-agent", "Version": "0.0.0~dev+abc1234", "Architecture": "arm64"},
			},
		},
		{
			format:    "rpm",
			files:     []map[string]file{common, systemd},
			conffiles: []string{"/etc/kvmmanager-agent/config.json"},
			scripts:   map[string]string{"postin": "packaging/scripts/rpm/postinstall.sh", "preun": "packaging/scripts/rpm/preremove.sh", "postun": "packaging/scripts/rpm/postremove.sh"},
			control: map[string]map[string]string{
				"amd64": {"Name": "kvmmanager-agent", "Version": "0.0.0~dev+abc1234", "Arch": "x86_64", "BuildHost": "kvmmanager-build"},
				"arm64": {"Name": "kvmmanager-agent", "Version": "0.0.0~dev+abc1234", "Arch": "aarch64", "BuildHost": "kvmmanager-build"},
			},
		},
		{
			format:  "apk",
			files:   []map[string]file{common, openrc},
			scripts: map[string]string{".post-install": "packaging/scripts/apk/post-install.sh", ".post-upgrade": "packaging/scripts/apk/post-upgrade.sh", ".pre-deinstall": "packaging/scripts/apk/pre-deinstall.sh"},
			control: map[string]map[string]string{
				"amd64": {"pkgname": "kvmmanager-agent", "pkgver": "0.0.0_alpha~abc1234", "arch": "x86_64"},
				"arm64": {"pkgname": "kvmmanager-agent", "pkgver": "0.0.0_alpha~abc1234", "arch": "aarch64"},
			},
		},
	}
	for _, tc := range tests {
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(tc.format+"/"+arch, func(t *testing.T) {
				i := slices.IndexFunc(pkgs, func(p Package) bool { return p.Format == tc.format && p.Arch == arch })
				if i < 0 {
					t.Fatalf("no %s package for %s in %+v", tc.format, arch, pkgs)
				}
				v := readPackage(t, tc.format, pkgs[i].Path)
				want := map[string]file{}
				for _, m := range tc.files {
					for k, f := range m {
						want[k] = f
					}
				}
				for p, e := range v.Files {
					if e.MTime != testEpoch {
						t.Errorf("%s: mtime %d, want SOURCE_DATE_EPOCH %d", p, e.MTime, testEpoch)
					}
					if e.Dir {
						continue
					}
					f, ok := want[p]
					if !ok {
						t.Errorf("unexpected file %s", p)
						continue
					}
					if e.Mode != f.mode {
						t.Errorf("%s: mode %o, want %o", p, e.Mode, f.mode)
					}
					var src []byte
					if f.src == "" {
						src, _ = os.ReadFile(bins[arch])
					} else {
						src = read(f.src)
					}
					if tc.format == "rpm" { // the test reads the rpm header, not the payload: sizes only
						if len(e.Data) != len(src) {
							t.Errorf("%s: %d bytes, want %d", p, len(e.Data), len(src))
						}
					} else if !bytes.Equal(e.Data, src) {
						t.Errorf("%s: content differs from %s", p, f.src)
					}
				}
				for p := range want {
					if _, ok := v.Files[p]; !ok {
						t.Errorf("missing %s", p)
					}
				}
				slices.Sort(v.Conffiles)
				if !slices.Equal(v.Conffiles, tc.conffiles) {
					t.Errorf("conffiles = %v, want %v", v.Conffiles, tc.conffiles)
				}
				for name, src := range tc.scripts {
					got, ok := v.Scripts[name]
					if !ok {
						t.Errorf("missing script %s (have %v)", name, keysOf(v.Scripts))
						continue
					}
					if strings.TrimSpace(string(got)) != strings.TrimSpace(string(read(src))) {
						t.Errorf("script %s differs from %s", name, src)
					}
				}
				if len(v.Scripts) != len(tc.scripts) {
					t.Errorf("scripts = %v, want %v", keysOf(v.Scripts), tc.scripts)
				}
				for k, want := range tc.control[arch] {
					if got := v.Control[k]; got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
			})
		}
	}
}

// TestReproducible builds twice, with every source file and script touched
// to another time in between, and wants identical bytes.
func TestReproducible(t *testing.T) {
	root, bins := testRoot(t)
	a := build(t, root, bins, t.TempDir())
	later := time.Unix(testEpoch+86400*3, 0)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Chtimes(p, later, later)
		}
		return nil
	})
	b := build(t, root, bins, t.TempDir())
	for i := range a {
		if filepath.Base(a[i].Path) != filepath.Base(b[i].Path) {
			t.Fatalf("names differ: %s vs %s", a[i].Path, b[i].Path)
		}
		ab, _ := os.ReadFile(a[i].Path)
		bb, _ := os.ReadFile(b[i].Path)
		if !bytes.Equal(ab, bb) {
			t.Errorf("%s: two builds differ", filepath.Base(a[i].Path))
		}
	}
}

func TestConventionalNames(t *testing.T) {
	root, bins := testRoot(t)
	var names []string
	for _, p := range build(t, root, bins, t.TempDir()) {
		names = append(names, filepath.Base(p.Path))
	}
	want := []string{
		"kvmmanager-agent_0.0.0~dev+abc1234_amd64.deb",
		"kvmmanager-agent-0.0.0~dev+abc1234-1.x86_64.rpm",
		"kvmmanager-agent_0.0.0_alpha~abc1234_x86_64.apk",
		"kvmmanager-agent_0.0.0~dev+abc1234_arm64.deb",
		"kvmmanager-agent-0.0.0~dev+abc1234-1.aarch64.rpm",
		"kvmmanager-agent_0.0.0_alpha~abc1234_aarch64.apk",
	}
	if !slices.Equal(names, want) {
		t.Errorf("names = %q\nwant    %q", names, want)
	}
	got, err := Identify(append([]string(nil), names...))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		if wantArch := []string{"amd64", "arm64"}[i/3]; p.Arch != wantArch || p.Format != Formats[i%3] {
			t.Errorf("Identify(%s) = %s/%s, want %s/%s", names[i], p.Format, p.Arch, Formats[i%3], wantArch)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	root, bins := testRoot(t)
	if err := os.Remove(filepath.Join(root, "packaging", "scripts", "deb", "postinst")); err != nil {
		t.Fatal(err)
	}
	_, err := Build(context.Background(), Options{Root: root, Dist: t.TempDir(), Info: testInfo, Binaries: bins})
	if err == nil || !strings.Contains(err.Error(), "postinst") {
		t.Errorf("Build without the deb postinst = %v, want an error naming it", err)
	}
	_, err = Build(context.Background(), Options{Root: root, Dist: t.TempDir(), Info: version.Info{Version: "1.0"}, Binaries: bins})
	if err == nil || !strings.Contains(err.Error(), "semantic version") {
		t.Errorf("Build with version 1.0 = %v, want a version error", err)
	}
}

func TestFormatVersion(t *testing.T) {
	tests := []struct{ in, deb, rpm, apk string }{
		{"1.2.0", "1.2.0", "1.2.0", "1.2.0"},
		{"1.2.0-rc.1", "1.2.0~rc.1", "1.2.0~rc.1", "1.2.0_rc1"},
		{"2.0.0-beta", "2.0.0~beta", "2.0.0~beta", "2.0.0_beta"},
		{"0.0.0-dev+abc1234", "0.0.0~dev+abc1234", "0.0.0~dev+abc1234", "0.0.0_alpha~abc1234"},
		{"1.2.0+3.gabc1234", "1.2.0+3.gabc1234", "1.2.0+3.gabc1234", "1.2.0_p3~abc1234"},
		{"1.0.0-pre-2+x-y", "1.0.0~pre.2+x.y", "1.0.0~pre_2+x_y", "1.0.0_alpha2"},
	}
	for _, tc := range tests {
		for format, want := range map[string]string{"deb": tc.deb, "rpm": tc.rpm, "apk": tc.apk} {
			got, err := FormatVersion(format, tc.in)
			if err != nil || got != want {
				t.Errorf("FormatVersion(%s, %q) = %q, %v; want %q", format, tc.in, got, err, want)
			}
		}
	}
	if _, err := FormatVersion("deb", "v1.0.0"); err == nil {
		t.Error("FormatVersion accepted v1.0.0")
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
