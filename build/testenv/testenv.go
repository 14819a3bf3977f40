// Package testenv lets tests that depend on outside tools (QEMU, mmdebstrap,
// shellcheck, rpm, ...) skip loudly when a tool is missing, or fail instead when
// the environment variable KVMMANAGER_REQUIRE_TOOLS=1 is set, as .ci/run does,
// so that nothing is silently skipped in CI.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "KVMMANAGER_REQUIRE_TOOLS"

// Required reports whether missing tools must fail tests instead of skipping them.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Unavailable skips t (or fails it when Required) with a loud reason.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("REQUIRED TOOL MISSING (%s=1): %s", RequireEnv, msg)
	}
	fmt.Fprintf(os.Stderr, "\n*** SKIPPING %s: %s (install it, see README; %s=1 makes this fatal)\n\n", t.Name(), msg, RequireEnv)
	t.Skipf("SKIP: %s", msg)
}

// NeedCommands skips or fails t unless every named command is on PATH.
// It returns the resolved paths in the same order.
func NeedCommands(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, len(names))
	for i, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			Unavailable(t, "command %q not found on PATH", n)
			return nil
		}
		paths[i] = p
	}
	return paths
}

// NeedFile skips or fails t unless path exists.
func NeedFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Unavailable(t, "file %s not available: %v", path, err)
	}
}

// NeedRoot skips or fails t unless the test runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "test needs root (euid %d)", os.Geteuid())
	}
}

// Root returns the repository root: the nearest directory at or above the
// working directory (a test's package directory under `go test`) that holds
// go.mod. It is the one way tests find the root; TestMain functions, which
// have no testing.TB, use it directly.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find repository root: %w", err)
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find repository root: no go.mod at or above %s", dir)
		}
	}
}

// MustRoot is Root for package-level variables of tests: it panics when
// the root cannot be found.
func MustRoot() string {
	root, err := Root()
	if err != nil {
		panic(err)
	}
	return root
}

// RepoRoot returns the repository root (see Root) or fails t.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// RepoPath returns the absolute path of a slash-separated path relative to
// the repository root, or fails t.
func RepoPath(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(RepoRoot(t), filepath.FromSlash(rel))
}
