//go:build !windows

package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// The path rules hold the same without openat2 (kernels before 5.6): the
// entries are then walked from "/" with O_NOFOLLOW.
func TestPathsWithoutOpenat2(t *testing.T) {
	noOpenat2.Store(true)
	defer noOpenat2.Store(false)
	t.Run("table", TestPathsDo)
	t.Run("proc", TestPathsProcMagicLinks)
	t.Run("nested", TestPathsNestedEntriesFallBack)
	t.Run("entry link", TestPathsEntryWithSymlinkRefused)
}

// An allowed entry reached through a symbolic link is not used, whoever
// owns the link: entries are opened without following any.
func TestPathsEntryWithSymlinkRefused(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(base, "entry")); err != nil {
		t.Fatal(err)
	}
	for _, entry := range []string{filepath.Join(base, "entry"), filepath.Join(base, "entry", "sub")} {
		p := NewPaths("allowed_read_paths", []string{entry})
		if _, err := readVia(p, filepath.Join(base, "entry", "f")); !errors.Is(err, ErrUntrusted) && !IsEscape(err) {
			t.Errorf("entry %s: err = %v, want a refusal", entry, err)
		}
	}
}

// An absolute whitelist entry in a directory others can write is refused
// at run time too (the config check may be older than the directory's mode).
func TestCommandsAbsoluteInWritableDirRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "ww")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(dir, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := NewCommands(true, []string{tool}, nil).Resolve(tool)
	if !errors.Is(err, ErrNotExecutable) || !strings.Contains(err.Error(), "writable by others") {
		t.Fatalf("Resolve = %v, want refusal naming the writable directory", err)
	}
}

// /dev/fd is root's link to /proc/self/fd, whose entries are the kernel's
// magic links: with both /dev and /proc allowed, the first link is followed
// (root's, into /proc) but the magic one is not.
func TestPathsDevFdRefused(t *testing.T) {
	if fi, err := os.Lstat("/dev/fd"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Skip("no /dev/fd link here")
	}
	f, err := os.Open("/etc/hostname")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	p := NewPaths("allowed_read_paths", []string{"/dev", "/proc"})
	for _, path := range []string{"/dev/fd/0", "/dev/stdin", fmt.Sprintf("/dev/fd/%d", f.Fd())} {
		if got, err := readVia(p, path); err == nil || (!IsEscape(err) && !errors.Is(err, fs.ErrNotExist)) {
			t.Errorf("read %s = %q, %v; want a refusal", path, got, err)
		}
	}
}
