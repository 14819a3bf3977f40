//go:build vmtest

package repo_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/repo"
	"github.com/kvmmanager/guest-agent/build/signing"
	"github.com/kvmmanager/guest-agent/build/signing/signingtest"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// The Debian chroot is the one build/installtest caches (same mmdebstrap
// command, same file name), so the two share one download.
const (
	chrootSuite  = "bookworm"
	chrootMirror = "http://deb.debian.org/debian"
	cacheEnv     = "KVMMANAGER_TEST_CACHE"
)

var chrootInclude = []string{"openrc", "rpm"}

func chrootTarball(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommands(t, "mmdebstrap", "unshare", "chroot", "tar", "mount")
	dir := os.Getenv(cacheEnv)
	if dir == "" {
		dir = "/var/cache/kvmmanager-test"
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{"installtest/1", chrootSuite, "minbase", chrootMirror, strings.Join(chrootInclude, ",")}, "\n")))
	p := filepath.Join(dir, fmt.Sprintf("installtest-%s-%s.tar", chrootSuite, hex.EncodeToString(sum[:6])))
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.%d.partial.tar", p, os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--mode=root",
		"--include="+strings.Join(chrootInclude, ","), chrootSuite, tmp, chrootMirror)
	t.Logf("building the test chroot (cached as %s)", p)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

type chroot struct {
	t    *testing.T
	root string
}

func newChroot(t *testing.T) *chroot {
	t.Helper()
	tarball := chrootTarball(t)
	root := t.TempDir()
	if out, err := exec.Command("tar", "-xf", tarball, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", tarball, err, out)
	}
	// Only the test repository: no network.
	os.Remove(filepath.Join(root, "etc/apt/sources.list"))
	return &chroot{t, root}
}

// run runs script with /bin/sh in the chroot (private mount namespace, /proc
// mounted, clean environment).
func (c *chroot) run(script string) (string, error) {
	const outer = `set -e
mount -t proc proc "$1/proc"
exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive /bin/sh -c "$2" </dev/null`
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", outer, "sh", c.root, script).CombinedOutput()
	return string(out), err
}

func (c *chroot) must(script string) string {
	c.t.Helper()
	out, err := c.run(script)
	c.t.Logf("# %s\n%s", script, out)
	if err != nil {
		c.t.Fatalf("in chroot: %v", err)
	}
	return out
}

func (c *chroot) mustFail(script string, want ...string) string {
	c.t.Helper()
	out, err := c.run(script)
	c.t.Logf("# %s (must fail)\n%s", script, out)
	if err == nil {
		c.t.Fatalf("in chroot: %q succeeded, want a refusal", script)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			c.t.Errorf("refusal lacks %q", w)
		}
	}
	return out
}

// serve puts a copy of the repository at /srv/repo in the chroot.
func (c *chroot) serve(dir string) {
	c.t.Helper()
	dst := filepath.Join(c.root, "srv/repo")
	os.RemoveAll(dst)
	if out, err := exec.Command("cp", "-a", dir, dst).CombinedOutput(); err != nil {
		c.t.Fatalf("copy repository: %v\n%s", err, out)
	}
	exec.Command("chmod", "-R", "a+rX", dst).Run()
}

// The user's setup, as README gives it.
const aptSetup = `install -d -m 0755 /etc/apt/keyrings
cp /srv/repo/` + repo.PublicKeyFile + ` /etc/apt/keyrings/kvmmanager-agent.asc
echo "deb [signed-by=/etc/apt/keyrings/kvmmanager-agent.asc] file:/srv/repo/deb stable main" >/etc/apt/sources.list.d/kvmmanager-agent.list`

// TestAptInstallUpgradeFromRepo: in a Debian bookworm chroot, apt installs
// the agent from the signed repository (file: source, signed-by the key),
// upgrades it to the next version added to the same repository keeping an
// edited config, and refuses a tampered Packages, a tampered .deb and a
// repository signed by another key.
func TestAptInstallUpgradeFromRepo(t *testing.T) {
	f := shared(t)
	c := newChroot(t)
	dir := t.TempDir()
	f.build(t, dir, f.loaded, oldVersion)
	c.serve(dir)
	c.must(aptSetup)
	c.must("apt-get update")
	c.must("apt-get install -y kvmmanager-agent")
	if out := c.must("dpkg-query -W -f '${Version}' kvmmanager-agent"); out != oldVersion {
		t.Fatalf("installed %q, want %s", out, oldVersion)
	}
	c.must(`sed -i 's/"log_level": "info"/"log_level": "debug"/' /etc/kvmmanager-agent/config.json && grep -q '"log_level": "debug"' /etc/kvmmanager-agent/config.json`)

	f.build(t, dir, f.loaded, newVersion)
	c.serve(dir)
	c.must("apt-get update")
	out := c.must("apt-get upgrade -y")
	if !strings.Contains(out, "kvmmanager-agent") {
		t.Errorf("apt-get upgrade did not upgrade the agent")
	}
	if out := c.must("dpkg-query -W -f '${Version}' kvmmanager-agent"); out != newVersion {
		t.Fatalf("after upgrade %q, want %s", out, newVersion)
	}
	if out := c.must("kvmmanager-agent --version"); !strings.Contains(out, newVersion) {
		t.Errorf("kvmmanager-agent --version: %s", out)
	}
	c.must(`grep -q '"log_level": "debug"' /etc/kvmmanager-agent/config.json`)

	t.Run("tampered Packages refused", func(t *testing.T) {
		bad := t.TempDir()
		exec.Command("cp", "-a", dir+"/.", bad).Run()
		idx := filepath.Join(bad, repo.AptDir, "dists", repo.Suite, repo.Component, "binary-amd64")
		pk, _ := os.ReadFile(filepath.Join(idx, "Packages"))
		pk = bytes.Replace(pk, []byte("Maintainer: "), []byte("Maintainer: X"), 1)
		os.WriteFile(filepath.Join(idx, "Packages"), pk, 0o644)
		var gz bytes.Buffer
		z := gzip.NewWriter(&gz)
		z.Write(pk)
		z.Close()
		os.WriteFile(filepath.Join(idx, "Packages.gz"), gz.Bytes(), 0o644)
		c.serve(bad)
		c.mustFail("rm -rf /var/lib/apt/lists/* && apt-get update -o APT::Update::Error-Mode=any", "Hash Sum mismatch")
	})

	t.Run("tampered deb refused", func(t *testing.T) {
		bad := t.TempDir()
		exec.Command("cp", "-a", dir+"/.", bad).Run()
		debs, _ := filepath.Glob(filepath.Join(bad, repo.AptDir, "pool/main/k/kvmmanager-agent/*"+newVersion+"*amd64.deb"))
		if len(debs) != 1 {
			t.Fatalf("pool: %v", debs)
		}
		flipByte(t, debs[0], func(n int) int { return n - 300 })
		c.serve(bad)
		c.must("rm -rf /var/lib/apt/lists/* && apt-get update")
		c.mustFail("apt-get install -y --reinstall kvmmanager-agent", "Hash Sum mismatch")
	})

	t.Run("repository signed by another key refused", func(t *testing.T) {
		other := signingtest.Generate(t, t.TempDir(), f.sde.Add(-time.Hour))
		otherKeys, err := signing.FromEnv(other.Getenv, f.sde)
		if err != nil {
			t.Fatal(err)
		}
		bad := t.TempDir()
		f.build(t, bad, otherKeys, oldVersion, newVersion)
		c.serve(bad)
		// signed-by still names the real key (the setup is not run again).
		c.mustFail("rm -rf /var/lib/apt/lists/* && apt-get update -o APT::Update::Error-Mode=any", "NO_PUBKEY")
	})
}
