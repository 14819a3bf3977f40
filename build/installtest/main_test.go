package installtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// repoRoot is the module root, two levels above this package.
var repoRoot = func() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("installtest: cannot locate the source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}()

// workDir holds what the tests share (built ISO trees); removed at exit.
var workDir string

func TestMain(m *testing.M) {
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
