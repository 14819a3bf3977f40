//go:build !windows

package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// readVia reads path through the policy, the way file_read does.
func readVia(p *Paths, path string) (string, error) {
	var data []byte
	err := p.Do(path, func(t *Target) error {
		fd, err := unix.Openat(int(t.Dir.Fd()), t.Name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: t.Path, Err: err}
		}
		f := os.NewFile(uintptr(fd), t.Path)
		defer f.Close()
		data, err = io.ReadAll(f)
		return err
	})
	return string(data), err
}

func TestPathsDo(t *testing.T) {
	base := t.TempDir()
	allowed := filepath.Join(base, "allowed")
	outside := filepath.Join(base, "outside")
	prefix := filepath.Join(base, "allowedfoo") // shares a string prefix with allowed
	for _, d := range []string{allowed, outside, prefix, filepath.Join(allowed, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(allowed, "a.txt"), "inside")
	write(filepath.Join(allowed, "sub", "b.txt"), "nested")
	write(filepath.Join(outside, "secret"), "secret")
	write(filepath.Join(prefix, "x"), "prefix")
	write(filepath.Join(base, "single"), "single file")
	write(filepath.Join(base, "single2"), "not listed")
	symlink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	symlink("../outside/secret", filepath.Join(allowed, "rel-out"))
	symlink(filepath.Join(outside, "secret"), filepath.Join(allowed, "abs-out"))
	symlink(outside, filepath.Join(allowed, "dir-out"))
	symlink("sub/b.txt", filepath.Join(allowed, "rel-in"))
	symlink(filepath.Join(allowed, "a.txt"), filepath.Join(allowed, "abs-in"))
	symlink("sub", filepath.Join(allowed, "dir-in"))

	p := NewPaths("allowed_read_paths", []string{allowed, filepath.Join(base, "single") + "/"})
	tests := []struct {
		name, path, want string
		wantErr          error
	}{
		{"file inside", filepath.Join(allowed, "a.txt"), "inside", nil},
		{"nested file", filepath.Join(allowed, "sub", "b.txt"), "nested", nil},
		{"dot and double slash", allowed + "/./sub//b.txt", "nested", nil},
		{"dotdot staying inside", allowed + "/sub/../a.txt", "inside", nil},
		{"relative symlink inside", filepath.Join(allowed, "rel-in"), "nested", nil},
		{"symlinked dir inside", filepath.Join(allowed, "dir-in", "b.txt"), "nested", nil},
		{"single-file entry", filepath.Join(base, "single"), "single file", nil},
		{"relative path", "allowed/a.txt", "", ErrNotAbsolute},
		{"not listed", filepath.Join(outside, "secret"), "", ErrOutside},
		{"string prefix confusion", filepath.Join(prefix, "x"), "", ErrOutside},
		{"sibling of single-file entry", filepath.Join(base, "single2"), "", ErrOutside},
		{"dotdot escape", allowed + "/../outside/secret", "", ErrOutside},
		{"dotdot escape from nested", allowed + "/sub/../../outside/secret", "", ErrOutside},
		{"relative symlink out", filepath.Join(allowed, "rel-out"), "", ErrOutside},
		{"absolute symlink out", filepath.Join(allowed, "abs-out"), "", ErrOutside},
		{"absolute symlink to inside", filepath.Join(allowed, "abs-in"), "inside", nil},
		{"symlinked dir component out", filepath.Join(allowed, "dir-out", "secret"), "", ErrOutside},
		{"missing file", filepath.Join(allowed, "nope"), "", fs.ErrNotExist},
		{"NUL byte", allowed + "/a\x00", "", ErrOutside},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readVia(p, tt.path)
			if tt.wantErr != nil {
				if tt.wantErr == ErrOutside {
					if !IsEscape(err) {
						t.Fatalf("read %q: err = %v, want an escape/outside error", tt.path, err)
					}
				} else if !errors.Is(err, tt.wantErr) {
					t.Fatalf("read %q: err = %v, want %v", tt.path, err, tt.wantErr)
				}
				if got != "" {
					t.Fatalf("read %q returned content %q despite the error", tt.path, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("read %q: %v", tt.path, err)
			}
			if got != tt.want {
				t.Fatalf("read %q = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestPathsOutsideMessageNamesKey(t *testing.T) {
	p := NewPaths("allowed_read_paths", []string{"/tmp"})
	err := p.Do("/tmpfoo/x", func(*Target) error { t.Fatal("op called for a path outside"); return nil })
	if !errors.Is(err, ErrOutside) {
		t.Fatalf("err = %v, want ErrOutside", err)
	}
	if want := `path "/tmpfoo/x" is outside allowed_read_paths`; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
}

// /proc/self/root is a magic link to "/": with /proc allowed, following it
// would expose the whole file system.
func TestPathsProcMagicLinks(t *testing.T) {
	if _, err := os.Stat("/proc/self/root/etc"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	p := NewPaths("allowed_read_paths", []string{"/proc"})
	for _, path := range []string{
		"/proc/self/root/etc/passwd",
		"/proc/self/cwd/go.mod",
		fmt.Sprintf("/proc/%d/root/etc/hostname", os.Getpid()),
		"/proc/self/fd/0",
	} {
		if _, err := readVia(p, path); !IsEscape(err) {
			t.Errorf("read %s: err = %v, want refusal as outside", path, err)
		}
	}
	// The "self" symlink itself stays inside /proc and must keep working.
	got, err := readVia(p, "/proc/self/comm")
	if err != nil || got == "" {
		t.Fatalf("read /proc/self/comm = %q, %v; want the process name", got, err)
	}
}

// With nested entries, a symlink that leaves the inner entry but stays in
// the outer one is allowed: the path is inside an allowed entry.
func TestPathsNestedEntriesFallBack(t *testing.T) {
	base := t.TempDir()
	inner := filepath.Join(base, "inner")
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "f"), []byte("outer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../f", filepath.Join(inner, "up")); err != nil {
		t.Fatal(err)
	}
	p := NewPaths("k", []string{inner, base})
	got, err := readVia(p, filepath.Join(inner, "up"))
	if err != nil || got != "outer" {
		t.Fatalf("read = %q, %v; want \"outer\"", got, err)
	}
	only := NewPaths("k", []string{inner})
	if _, err := readVia(only, filepath.Join(inner, "up")); !IsEscape(err) {
		t.Fatalf("inner only: err = %v, want outside", err)
	}
}

func TestPathsMissingEntryIsNotFound(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	p := NewPaths("allowed_write_paths", []string{missing})
	_, err := readVia(p, filepath.Join(missing, "x"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want not exist", err)
	}
}
