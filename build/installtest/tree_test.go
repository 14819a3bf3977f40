package installtest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/kvmmanager/guest-agent/build/iso"
	"github.com/kvmmanager/guest-agent/build/pipeline"
)

// Versions of the two discs the upgrade tests install one after the other.
const (
	oldVersion = "1.0.0"
	newVersion = "1.1.0"
)

var (
	treesMu sync.Mutex
	trees   = map[string]string{}
)

// isoTree builds the installer disc of version v with the real build
// pipeline and returns a directory holding its files as a guest sees them:
// read from the image, every file and directory mode 0555. Discs are built
// once per test run.
func isoTree(t *testing.T, v string) string {
	t.Helper()
	treesMu.Lock()
	defer treesMu.Unlock()
	if dir, ok := trees[v]; ok {
		return dir
	}
	dist := filepath.Join(workDir, "dist-"+v)
	img, err := pipeline.ISO(context.Background(), pipeline.Options{Root: repoRoot, Dist: dist, Version: v})
	if err != nil {
		t.Fatalf("build the %s installer disc: %v", v, err)
	}
	files, err := iso.ReadAll(img)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(workDir, "iso-"+v)
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	if err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.IsDir() {
			return err
		}
		return os.Chmod(p, 0o555)
	}); err != nil {
		t.Fatal(err)
	}
	trees[v] = dir
	return dir
}

// hostArch is the Go architecture of this machine, as the disc names it.
func hostArch() string { return runtime.GOARCH }
