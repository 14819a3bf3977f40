package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveWindows(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"tool.exe", "old.com", "script.bat", "run.cmd", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("MZ"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := NewCommands(false, nil, []string{dir})
	white := NewCommands(true, []string{"tool", `C:\Windows\System32\whoami.exe`, "OLD.COM"}, []string{dir})
	tests := []struct {
		c       *Commands
		command string
		want    string
		err     error
	}{
		{open, "tool", filepath.Join(dir, "tool.exe"), nil},
		{open, "TOOL.EXE", filepath.Join(dir, "TOOL.EXE"), nil},
		{open, "old", filepath.Join(dir, "old.com"), nil},
		{open, "script.bat", "", ErrNotExecutable},
		{open, "run.cmd", "", ErrNotExecutable},
		{open, "notes.txt", "", ErrNotExecutable},
		{open, "script", "", ErrCommandNotFound}, // .bat is not tried
		{open, "missing", "", ErrCommandNotFound},
		{open, `bin\tool.exe`, "", ErrBadCommand},
		{open, `.\tool.exe`, "", ErrBadCommand},
		{open, `\\server\share\tool.exe`, "", ErrBadCommand},
		{open, `\\?\` + filepath.Join(dir, "tool.exe"), "", ErrBadCommand},
		{open, filepath.Join(dir, "tool.exe") + ":stream", "", ErrBadCommand},
		{open, filepath.Join(dir, "tool.exe"), filepath.Join(dir, "tool.exe"), nil},
		{open, filepath.Join(dir, "script.bat"), "", ErrNotExecutable},
		{open, "", "", ErrBadCommand},
		{open, "a\x00b", "", ErrBadCommand},
		{white, "tool", filepath.Join(dir, "tool.exe"), nil},
		{white, "Tool.exe", filepath.Join(dir, "Tool.exe"), nil},
		{white, "old.com", filepath.Join(dir, "old.com"), nil},
		{white, "other", "", ErrNotWhitelisted},
		{white, filepath.Join(dir, "tool.exe"), "", ErrNotWhitelisted}, // an absolute path must be listed verbatim
	}
	for _, tt := range tests {
		got, err := tt.c.Resolve(tt.command)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Resolve(%q) = %q, %v; want %v", tt.command, got, err, tt.err)
			}
			continue
		}
		if err != nil || !strings.EqualFold(got, tt.want) {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tt.command, got, err, tt.want)
		}
	}
}

func TestResolveSystemCommand(t *testing.T) {
	got, err := NewCommands(false, nil, nil).Resolve("cmd")
	if err != nil || !strings.EqualFold(filepath.Base(got), "cmd.exe") {
		t.Errorf(`Resolve("cmd") = %q, %v; want ...\System32\cmd.exe`, got, err)
	}
}
