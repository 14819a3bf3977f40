//go:build vmtest

package repo_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/kvmmanager/guest-agent/build/repo"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// shellStub writes a signed rpm that provides /bin/sh with the host's static
// busybox, so that an otherwise empty dnf install root can satisfy the
// agent's scriptlet dependency and run its scriptlets.
func shellStub(t *testing.T, f *fixture, dir string) string {
	t.Helper()
	testenv.NeedFile(t, "/bin/busybox")
	info := nfpm.WithDefaults(&nfpm.Info{
		Name: "test-shell", Arch: "amd64", Platform: "linux", Version: "1.0", Release: "1",
		Maintainer: "test <test@kvmmanager.invalid>", Description: "busybox as /bin/sh for a test install root",
		MTime: f.sde,
		Overridables: nfpm.Overridables{
			Provides: []string{"/bin/sh"},
			Contents: files.Contents{
				{Source: "/bin/busybox", Destination: "/bin/busybox", FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: "/bin/busybox", Destination: "/bin/sh", Type: files.TypeSymlink},
			},
		},
	})
	info.Contents[1].Source = "busybox"
	info.RPM.Signature.SignFn = func(r io.Reader) ([]byte, error) { return f.loaded.Detach(r) }
	if err := nfpm.PrepareForPackager(info, "rpm"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "test-shell-1.0-1.x86_64.rpm")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	pk, _ := nfpm.Get("rpm")
	if err := pk.Package(info, out); err != nil {
		t.Fatalf("build stub rpm: %v", err)
	}
	return p
}

// dnf runs dnf on an install root with the repository as its only source,
// gpgcheck and repo_gpgcheck on, and the published key.
func dnf(t *testing.T, root, repoDir string, args ...string) (string, error) {
	t.Helper()
	base := []string{
		"--installroot=" + root, "--releasever=12", "--assumeyes", "--setopt=reposdir=/nonexistent",
		"--setopt=install_weak_deps=False", "--setopt=cachedir=" + filepath.Join(root, "var/cache/dnf"),
		"--repofrompath=kvmmanager,file://" + filepath.Join(repoDir, repo.RPMDir),
		"--setopt=kvmmanager.gpgcheck=1", "--setopt=kvmmanager.repo_gpgcheck=1", "--setopt=kvmmanager.skip_if_unavailable=False",
		"--setopt=kvmmanager.gpgkey=file://" + filepath.Join(repoDir, repo.PublicKeyFile),
	}
	return run(t, nil, "dnf", append(base, args...)...)
}

// TestDnfInstallsFromRepo: Debian's dnf (bookworm: 4.14) installs the agent
// from the repository into an empty install root with gpgcheck=1 and
// repo_gpgcheck=1, upgrades it, and refuses a tampered rpm.
func TestDnfInstallsFromRepo(t *testing.T) {
	testenv.NeedCommands(t, "dnf", "rpm")
	f := shared(t)
	dir := t.TempDir()
	stubDir := t.TempDir()
	stub := shellStub(t, f, stubDir)
	if _, err := repo.Build(repo.Options{Dir: dir, Packages: append([]string{stub}, f.pkgs[oldVersion]...), Keys: f.loaded, Time: f.sde}); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	// The agent's rpm requires /bin/sh for its scriptlets: dnf pulls in the
	// shell (test-shell provides it) and installs it first, in one transaction.
	out, err := dnf(t, root, dir, "install", "kvmmanager-agent")
	t.Logf("dnf install:\n%s", out)
	if err != nil || strings.Contains(out, "scriptlet failed") {
		t.Fatalf("dnf install: %v", err)
	}
	must(t, nil, "rpm", "--root", root, "-q", "test-shell") // pulled in by Requires: /bin/sh
	q := must(t, nil, "rpm", "--root", root, "-q", "--qf", "%{VERSION} %{SIGPGP:pgpsig}\n", "kvmmanager-agent")
	if !strings.HasPrefix(q, oldVersion+" ") || !strings.Contains(strings.ToLower(q), strings.ToLower(f.loaded.Fingerprint()[24:])) {
		t.Errorf("installed: %s (want %s signed by %s)", q, oldVersion, f.loaded.Fingerprint())
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/kvmmanager-agent")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "etc/kvmmanager-agent/config.json")
	edited := strings.Replace(string(read(t, cfg)), `"log_level": "info"`, `"log_level": "debug"`, 1)
	os.WriteFile(cfg, []byte(edited), 0o644)

	f.build(t, dir, f.loaded, newVersion)
	out, err = dnf(t, root, dir, "--refresh", "upgrade", "kvmmanager-agent")
	t.Logf("dnf upgrade:\n%s", out)
	if err != nil || strings.Contains(out, "scriptlet failed") {
		t.Fatalf("dnf upgrade: %v", err)
	}
	if q := must(t, nil, "rpm", "--root", root, "-q", "--qf", "%{VERSION}", "kvmmanager-agent"); q != newVersion {
		t.Errorf("after upgrade: %s, want %s", q, newVersion)
	}
	if string(read(t, cfg)) != edited {
		t.Error("upgrade did not keep the edited config")
	}

	t.Run("tampered rpm refused", func(t *testing.T) {
		bad := t.TempDir()
		// A repository whose only agent rpm has one byte changed in its payload
		// and whose metadata (re-made, re-signed) matches the tampered file:
		// only the package signature can catch it.
		evil := filepath.Join(t.TempDir(), filepath.Base(pkgOf(t, f, oldVersion, "rpm", "amd64")))
		data := read(t, pkgOf(t, f, oldVersion, "rpm", "amd64"))
		data[len(data)-200] ^= 0x20
		os.WriteFile(evil, data, 0o644)
		if _, err := repo.Build(repo.Options{Dir: bad, Packages: []string{stub, evil}, Keys: f.loaded, Time: f.sde}); err != nil {
			t.Fatal(err)
		}
		out, err := dnf(t, t.TempDir(), bad, "install", "kvmmanager-agent")
		if err == nil || strings.Contains(out, "Complete!") {
			t.Fatalf("dnf installed a tampered rpm:\n%s", out)
		}
		t.Logf("dnf refused (as it should):\n%s", out)
		if !strings.Contains(out, "GPG check FAILED") {
			t.Errorf("refused for another reason than the signature:\n%s", out)
		}
	})

	t.Run("tampered repomd.xml refused", func(t *testing.T) {
		bad := t.TempDir()
		f.build(t, bad, f.loaded, oldVersion)
		repomd := filepath.Join(bad, repo.RPMDir, "repodata", "repomd.xml")
		b := read(t, repomd)
		os.WriteFile(repomd, []byte(strings.Replace(string(b), "<revision>", fmt.Sprintf("<revision>%d", time.Now().Unix()%10), 1)), 0o644)
		out, err := dnf(t, t.TempDir(), bad, "makecache")
		if err == nil || !strings.Contains(out, "Bad GPG signature") {
			t.Fatalf("dnf accepted a repomd.xml that does not match repomd.xml.asc (%v):\n%s", err, out)
		}
		t.Logf("dnf refused (as it should):\n%s", out)
	})
}
