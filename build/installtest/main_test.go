package installtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// repoRoot is the repository root, set by TestMain.
var repoRoot string

// workDir holds what the tests share (built ISO trees); removed at exit.
var workDir string

func TestMain(m *testing.M) {
	root, err := testenv.Root()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "kvmmanager-installtest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "create work directory: %v\n", err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	// The disc trees are read-only like the disc; make them removable.
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "remove %s: %v\n", dir, err)
	}
	os.Exit(code)
}

// repoPath returns the absolute path of a slash-separated repository path.
func repoPath(rel string) string { return filepath.Join(repoRoot, filepath.FromSlash(rel)) }

// dryRunEnd is the last line of every installer's --dry-run.
const dryRunEnd = "Dry run: nothing was changed (run without --dry-run to do it)."

// wantDryRunEnd fails t unless out, the output of a --dry-run, ends with
// dryRunEnd and claims nothing was done.
func wantDryRunEnd(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != dryRunEnd {
		t.Errorf("--dry-run output ends with %q, want %q:\n%s", last, dryRunEnd, out)
	}
	if strings.Contains(out, "Done:") {
		t.Errorf("--dry-run output says Done:\n%s", out)
	}
}

// wantContains fails t for each of subs that out lacks.
func wantContains(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}
