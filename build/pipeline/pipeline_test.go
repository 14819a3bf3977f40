package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"

	"github.com/kvmmanager/guest-agent/build/binaries"
	"github.com/kvmmanager/guest-agent/build/iso"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

var repoRoot = testenv.MustRoot()

func buildISO(t *testing.T, dist, version string) (string, string) {
	t.Helper()
	var out bytes.Buffer
	p, err := ISO(context.Background(), Options{Root: repoRoot, Dist: dist, Version: version, Out: &out})
	if err != nil {
		t.Fatalf("pipeline.ISO into %s: %v\n%s", dist, err, out.String())
	}
	return p, out.String()
}

// distHashes returns the sha256 of every artifact under dist (stamps aside).
func distHashes(t *testing.T, dist string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dist, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".stamps" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			rel, _ := filepath.Rel(dist, p)
			out[rel] = hex.EncodeToString(sum[:])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestISO builds the real repository twice into two temporary directories,
// compares every artifact byte for byte, and checks every file on the disc
// against its source.
func TestISO(t *testing.T) {
	distA, distB := t.TempDir(), t.TempDir()
	isoA, log := buildISO(t, distA, "")
	isoB, _ := buildISO(t, distB, "")
	if isoA != filepath.Join(distA, "kvmmanager-guest-agent.iso") {
		t.Errorf("ISO path = %s", isoA)
	}
	ha, hb := distHashes(t, distA), distHashes(t, distB)
	if len(ha) < 9 {
		t.Errorf("dist holds %d artifacts, want binaries, 6 packages and the ISO: %v", len(ha), ha)
	}
	for k, v := range ha {
		if hb[k] != v {
			t.Errorf("%s differs between two builds of one commit (%s vs %s)", k, v, hb[k])
		}
	}
	if len(ha) != len(hb) {
		t.Errorf("the two builds made different files: %v vs %v", ha, hb)
	}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if strings.HasPrefix(line, "notice:") {
			continue
		}
		if f := strings.Fields(line); len(f) < 4 || strings.Contains(line, "up to date") {
			t.Errorf("artifact line %q: want path, size and time of a fresh build", line)
		}
	}
	_ = isoB

	info, err := Info(Options{Root: repoRoot})
	if err != nil {
		t.Fatal(err)
	}
	got, err := iso.ReadAll(isoA)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, f := range iso.RootFiles {
		want[f.Disc] = read(filepath.Join(repoRoot, f.Src))
	}
	for _, a := range binaries.Arches {
		want["linux-"+a+"/kvmmanager-agent"] = read(binaries.Path(distA, a, "kvmmanager-agent"))
		want["windows-"+a+"/kvmmanager-agent.exe"] = read(filepath.Join(distA, "bin", "windows-"+a, "kvmmanager-agent.exe"))
	}
	pkgs, err := Packages(context.Background(), Options{Root: repoRoot, Dist: distA})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 6 {
		t.Fatalf("%d packages, want 6", len(pkgs))
	}
	for _, p := range pkgs {
		want["packages/"+p.Arch+"/kvmmanager-agent."+p.Format] = read(p.Path)
	}
	for name, b := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: missing from the ISO", name)
		} else if !bytes.Equal(g, b) {
			t.Errorf("%s: differs from its source", name)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok && name != "readme.txt" && name != "sha256sums.txt" {
			t.Errorf("%s: unexpected file on the ISO", name)
		}
	}
	if r := string(got["readme.txt"]); !strings.Contains(r, info.Version) || !strings.Contains(r, "install-debian.sh") {
		t.Errorf("readme.txt lacks the version %s or the install instructions:\n%s", info.Version, r)
	}
	var summed []string
	for _, line := range strings.Split(strings.TrimSpace(string(got["sha256sums.txt"])), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("sha256sums.txt line %q", line)
		}
		h := sha256.Sum256(got[name])
		if hex.EncodeToString(h[:]) != sum {
			t.Errorf("sha256sums.txt: %s does not match", name)
		}
		summed = append(summed, name)
	}
	if len(summed) != len(got)-1 || slices.Contains(summed, "sha256sums.txt") {
		t.Errorf("sha256sums.txt covers %v, want every other file (%d)", summed, len(got)-1)
	}

	f, err := os.Open(isoA)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	if label, _ := img.Label(); label != "KVMMANAGER_AGENT" {
		t.Errorf("label %q", label)
	}
	root, _ := img.RootDir()
	children, _ := root.GetChildren()
	for _, c := range children {
		if !c.ModTime().Equal(info.Time()) {
			t.Errorf("%s: date %v, want SOURCE_DATE_EPOCH %v", c.Name(), c.ModTime(), info.Time())
		}
	}
}

// TestUpToDateAndVersionChange: a second run skips every step and leaves the
// files alone; a different version rebuilds everything and replaces the
// packages of the old one.
func TestUpToDateAndVersionChange(t *testing.T) {
	dist := t.TempDir()
	isoPath, _ := buildISO(t, dist, "")
	before, err := os.Stat(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	_, log := buildISO(t, dist, "")
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if !strings.HasPrefix(line, "notice:") && !strings.HasSuffix(line, "up to date") {
			t.Errorf("second run rebuilt: %q", line)
		}
	}
	if after, _ := os.Stat(isoPath); !after.ModTime().Equal(before.ModTime()) {
		t.Error("second run rewrote the ISO")
	}

	// A changed output is rebuilt, not trusted.
	if err := os.WriteFile(isoPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, log = buildISO(t, dist, ""); !strings.Contains(log, "kvmmanager-guest-agent.iso") || strings.Contains(lineOf(log, ".iso"), "up to date") {
		t.Errorf("a damaged ISO was not rebuilt:\n%s", log)
	}

	_, log = buildISO(t, dist, "9.9.9")
	if strings.Contains(log, "up to date") {
		t.Errorf("a version change left steps up to date:\n%s", log)
	}
	entries, err := os.ReadDir(filepath.Join(dist, "packages"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 6 {
		t.Errorf("dist/packages holds %d files after a version change, want the 6 of 9.9.9", len(entries))
	}
	for _, e := range entries {
		if !strings.Contains(e.Name(), "9.9.9") {
			t.Errorf("stale package %s", e.Name())
		}
	}
}

func lineOf(log, substr string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

func TestRelease(t *testing.T) {
	dist := t.TempDir()
	var log bytes.Buffer
	m, err := Release(context.Background(), Options{Root: repoRoot, Dist: dist, Version: "1.2.3", Out: &log})
	if err != nil {
		t.Fatal(err)
	}
	// Each artifact is reported once, although the ISO, the binaries and the
	// packages are all asked for by the release step.
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasSuffix(f[0], ":") { // not "signing:" or "notice:"
			seen[f[0]]++
		}
	}
	if len(seen) == 0 {
		t.Errorf("the release printed no artifact lines:\n%s", log.String())
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%s reported %d times, want once:\n%s", p, n, log.String())
		}
	}
	cmds, err := binaries.Present(repoRoot, nil)
	if err != nil {
		t.Fatal(err)
	}
	nbin := 0 // every command on every platform it is built for
	for _, c := range cmds {
		nbin += len(c.Platforms())
	}
	// binaries and their SBOMs, 6 packages, the ISO; no keys, no signature
	if want := 2*nbin + 6 + 1; len(m.Assets) != want {
		t.Errorf("%d assets, want %d", len(m.Assets), want)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	if len(lines) != len(m.Assets) {
		t.Errorf("SHA256SUMS has %d lines for %d assets", len(lines), len(m.Assets))
	}
	for _, line := range lines {
		sum, name, _ := strings.Cut(line, "  ")
		b, err := os.ReadFile(filepath.Join(dist, name)) // flat at the top of dist/
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != sum {
			t.Errorf("SHA256SUMS: %s does not match", name)
		}
	}
	var disk Manifest
	b, err := os.ReadFile(filepath.Join(dist, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &disk); err != nil {
		t.Fatal(err)
	}
	formats := map[string]int{}
	for _, a := range disk.Assets {
		formats[a.Format]++
		if a.Version != "1.2.3" || a.Size == 0 || len(a.SHA256) != 64 || a.Arch == "" || a.Signed {
			t.Errorf("manifest asset %+v incomplete", a)
		}
		if _, err := os.Stat(filepath.Join(dist, filepath.FromSlash(a.Path))); err != nil {
			t.Errorf("manifest path %s: %v", a.Path, err)
		}
	}
	if formats["deb"] != 2 || formats["rpm"] != 2 || formats["apk"] != 2 || formats["iso"] != 1 || formats["binary"] != nbin ||
		formats["sbom"] != nbin || formats["key"] != 0 || formats["signature"] != 0 {
		t.Errorf("manifest formats %v", formats)
	}
}

// Tests of several packages (e2e, distro, installers) build into the same
// dist/ at once: concurrent runs must serialise on the directory, not trip
// over each other's temporary files.
func TestConcurrentRunsShareDist(t *testing.T) {
	dist := t.TempDir()
	const runs = 3
	errs := make(chan error, runs)
	for i := 0; i < runs; i++ {
		go func() {
			_, err := ISO(context.Background(), Options{Root: repoRoot, Dist: dist, Version: "1.0.0"})
			errs <- err
		}()
	}
	for i := 0; i < runs; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent ISO run: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dist, "kvmmanager-guest-agent.iso")); err != nil {
		t.Error(err)
	}
}
