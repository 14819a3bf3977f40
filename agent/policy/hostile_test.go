//go:build !windows

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

// Bare names are looked up only in directories nobody but root (or the
// agent's own user) can write: a group-writable directory (the historical
// /usr/local/bin of group staff) or one owned by another user would let that
// group or user plant a command the agent runs as root. A file there that
// others can write is skipped too.
func TestCommandsSkipDirsOthersCanWrite(t *testing.T) {
	base := t.TempDir()
	mk := func(dir string, mode os.FileMode, uid, gid int) string {
		t.Helper()
		d := filepath.Join(base, dir)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 || gid >= 0 {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	staff := -1 // as root, a group other than root's; otherwise the user's own
	if os.Geteuid() == 0 {
		staff = 50
	}
	groupW := mk("group-writable", 0o775, -1, staff)
	good := mk("good", 0o755, -1, -1)
	dirs := []string{groupW, good}
	if os.Geteuid() == 0 {
		dirs = append([]string{mk("user-owned", 0o755, 1234, -1)}, dirs...)
	}
	weak := mk("weak-file", 0o755, -1, -1)
	if err := os.Chmod(filepath.Join(weak, "tool"), 0o777); err != nil {
		t.Fatal(err)
	}
	dirs = append([]string{weak}, dirs...)
	got, err := NewCommands(false, nil, dirs).Resolve("tool")
	if want := filepath.Join(good, "tool"); err != nil || got != want {
		t.Fatalf("Resolve(tool) = %q, %v; want %q (the only one nobody else can replace)", got, err, want)
	}
}
