//go:build !windows

package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCommandsResolve(t *testing.T) {
	base := t.TempDir()
	dir1 := filepath.Join(base, "bin1")
	dir2 := filepath.Join(base, "bin2")
	open := filepath.Join(base, "world-writable")
	for _, d := range []string{dir1, dir2, open} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	mk := func(p string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	mk(filepath.Join(dir1, "tool"), 0o755)
	mk(filepath.Join(dir2, "tool"), 0o755) // shadowed by dir1
	mk(filepath.Join(dir2, "other"), 0o755)
	mk(filepath.Join(dir1, "noexec"), 0o644)
	mk(filepath.Join(open, "planted"), 0o755)
	if err := os.Mkdir(filepath.Join(dir1, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir2, "other")
	dirs := []string{open, dir1, dir2}

	tests := []struct {
		name      string
		whitelist []string // nil: whitelist off
		command   string
		want      string
		wantErr   error
	}{
		{"bare name, first dir wins", nil, "tool", filepath.Join(dir1, "tool"), nil},
		{"bare name in later dir", nil, "other", abs, nil},
		{"absolute path, whitelist off", nil, abs, abs, nil},
		{"not found", nil, "nosuch", "", ErrCommandNotFound},
		{"absolute missing", nil, filepath.Join(dir1, "nosuch"), "", ErrCommandNotFound},
		{"not executable", nil, "noexec", "", ErrNotExecutable},
		{"directory", nil, filepath.Join(dir1, "adir"), "", ErrNotExecutable},
		{"world-writable dir skipped", nil, "planted", "", ErrCommandNotFound},
		{"empty", nil, "", "", ErrBadCommand},
		{"dot-slash", nil, "./tool", "", ErrBadCommand},
		{"dotdot", nil, "../bin1/tool", "", ErrBadCommand},
		{"relative with slash", nil, "bin1/tool", "", ErrBadCommand},
		{"NUL", nil, "tool\x00x", "", ErrBadCommand},
		{"whitelisted bare name", []string{"tool"}, "tool", filepath.Join(dir1, "tool"), nil},
		{"whitelisted absolute verbatim", []string{abs}, abs, abs, nil},
		{"bare name not whitelisted", []string{"tool"}, "other", "", ErrNotWhitelisted},
		{"absolute path of whitelisted bare name", []string{"tool"}, filepath.Join(dir1, "tool"), "", ErrNotWhitelisted},
		{"bare name of whitelisted absolute path", []string{abs}, "other", "", ErrNotWhitelisted},
		{"absolute not verbatim", []string{abs}, dir2 + "//other", "", ErrNotWhitelisted},
		{"dotdot with whitelist", []string{"tool"}, "../tool", "", ErrBadCommand},
		{"whitelisted but missing", []string{"nosuch"}, "nosuch", "", ErrCommandNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCommands(tt.whitelist != nil, tt.whitelist, dirs)
			got, err := c.Resolve(tt.command)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve(%q) = %q, %v; want error %v", tt.command, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tt.command, got, err, tt.want)
			}
		})
	}
}

func TestCommandsSystemPATH(t *testing.T) {
	c := NewCommands(true, []string{"sh"}, nil)
	got, err := c.Resolve("sh")
	if err != nil {
		t.Skipf("no sh in the system PATH: %v", err)
	}
	if got != "/usr/local/sbin/sh" && got != "/usr/local/bin/sh" && got != "/usr/sbin/sh" &&
		got != "/usr/bin/sh" && got != "/sbin/sh" && got != "/bin/sh" {
		t.Fatalf("Resolve(sh) = %q, want a file in %s", got, SystemPATH)
	}
	t.Setenv("PATH", t.TempDir())
	if got2, err := c.Resolve("sh"); err != nil || got2 != got {
		t.Fatalf("with PATH changed: Resolve(sh) = %q, %v; want %q (the environment must not matter)", got2, err, got)
	}
}
