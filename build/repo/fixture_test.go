package repo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/packages"
	"github.com/kvmmanager/guest-agent/build/pipeline"
	"github.com/kvmmanager/guest-agent/build/repo"
	"github.com/kvmmanager/guest-agent/build/signing"
	"github.com/kvmmanager/guest-agent/build/signing/signingtest"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

var repoRoot = testenv.MustRoot()

// The two versions every test puts in a repository: an install, then an upgrade.
const (
	oldVersion = "1.0.0"
	newVersion = "1.1.0"
)

type fixture struct {
	keys    signingtest.Keys
	loaded  *signing.Keys
	sde     time.Time
	pkgs    map[string][]string // version -> package paths
	tmp     string
	errText string
}

var (
	fixOnce sync.Once
	fix     fixture
)

// TestMain removes the shared fixture's directory.
func TestMain(m *testing.M) {
	code := m.Run()
	if fix.tmp != "" {
		os.RemoveAll(fix.tmp)
	}
	os.Exit(code)
}

// shared builds, once per test binary, throwaway keys and the signed packages
// of two versions of this commit.
func shared(t *testing.T) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		var err error
		if fix.tmp, err = os.MkdirTemp("", "repo-test-"); err != nil {
			fix.errText = err.Error()
			return
		}
		info, err := pipeline.Info(pipeline.Options{Root: repoRoot})
		if err != nil {
			fix.errText = err.Error()
			return
		}
		fix.sde = info.Time()
		fix.keys = signingtest.Generate(t, fix.tmp, fix.sde.Add(-24*time.Hour))
		if fix.loaded, err = signing.FromEnv(fix.keys.Getenv, fix.sde); err != nil {
			fix.errText = err.Error()
			return
		}
		fix.pkgs = map[string][]string{}
		for _, v := range []string{oldVersion, newVersion} {
			var out bytes.Buffer
			pkgs, err := pipeline.Packages(context.Background(), pipeline.Options{
				Root: repoRoot, Dist: filepath.Join(fix.tmp, "dist-"+v), Version: v, Out: &out, Getenv: fix.keys.Getenv})
			if err != nil {
				fix.errText = "build packages " + v + ": " + err.Error() + "\n" + out.String()
				return
			}
			for _, p := range pkgs {
				fix.pkgs[v] = append(fix.pkgs[v], p.Path)
			}
		}
	})
	if fix.errText != "" {
		t.Fatal(fix.errText)
	}
	return &fix
}

// build adds the packages of the versions to the repository at dir, signed
// (keys) or not (nil).
func (f *fixture) build(t *testing.T, dir string, keys *signing.Keys, versions ...string) repo.Result {
	t.Helper()
	var pkgs []string
	for _, v := range versions {
		pkgs = append(pkgs, f.pkgs[v]...)
	}
	res, err := repo.Build(repo.Options{Dir: dir, Packages: pkgs, Keys: keys, Time: f.sde})
	if err != nil {
		t.Fatalf("repo.Build %v into %s: %v", versions, dir, err)
	}
	return res
}

func run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func must(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func pkgOf(t *testing.T, f *fixture, version, format, arch string) string {
	t.Helper()
	ps, err := packages.Identify(f.pkgs[version])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Format == format && p.Arch == arch {
			return p.Path
		}
	}
	t.Fatalf("no %s %s package of %s", arch, format, version)
	return ""
}

func flipByte(t *testing.T, p string, at func(n int) int) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at(len(b))] ^= 0x20
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
