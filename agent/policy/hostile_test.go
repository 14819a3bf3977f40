package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A single-file entry allows that file only: if it is a symbolic link, even
// one to a sibling in the same directory, it is refused rather than followed
// to a file nobody listed.
func TestSingleFileEntrySymlinkRefused(t *testing.T) {
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("not listed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "plain"), []byte("listed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("secret", filepath.Join(base, "listed-link")); err != nil {
		t.Fatal(err)
	}
	p := NewPaths("allowed_read_paths", []string{filepath.Join(base, "listed-link"), filepath.Join(base, "plain")})
	got, err := readVia(p, filepath.Join(base, "listed-link"))
	if !errors.Is(err, ErrOutside) {
		t.Fatalf("read through a single-file entry that is a symlink: %q, %v; want ErrOutside", got, err)
	}
	if got, err := readVia(p, filepath.Join(base, "plain")); err != nil || got != "listed" {
		t.Fatalf("plain single-file entry: %q, %v", got, err)
	}
}
