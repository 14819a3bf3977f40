package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRootFindsModule(t *testing.T) {
	root := RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "module github.com/kvmmanager/guest-agent\n"
	if len(b) < len(want) || string(b[:len(want)]) != want {
		t.Errorf("%s/go.mod starts %q, want %q", root, b[:min(len(b), len(want))], want)
	}
	if got, want := RepoPath(t, "build/testenv"), filepath.Join(root, "build", "testenv"); got != want {
		t.Errorf("RepoPath = %s, want %s", got, want)
	}
}

func TestRootOutsideModule(t *testing.T) {
	t.Chdir(t.TempDir())
	if root, err := Root(); err == nil {
		t.Errorf("Root() in a temporary directory = %s, want an error", root)
	}
}
