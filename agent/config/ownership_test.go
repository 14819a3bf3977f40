package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An entry a user other than root could replace stops the agent at load
// with one line naming the file, the key and the entry: an allowed
// directory the user can rename (and swap for a link), a whitelisted
// program in a directory others can write (they plant what root runs), a
// missing entry others could create. Root's own paths, and /tmp itself, load.
func TestLoadRefusesEntriesOthersCanReplace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	base := t.TempDir()
	pub := filepath.Join(base, "pub") // like /tmp
	mk := func(p string, mode os.FileMode, uid int) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk(pub, os.ModeSticky|0o777, 0)
	rootDir := mk(filepath.Join(pub, "rootdir"), 0o755, 0)
	userDir := mk(filepath.Join(pub, "userdir"), 0o755, 65534)
	wwDir := mk(filepath.Join(base, "ww"), 0o777, 0)
	tool := filepath.Join(wwDir, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rootTool := filepath.Join(rootDir, "tool")
	if err := os.WriteFile(rootTool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(rootDir, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body, refuse string // refuse: "" loads, else the key named
	}{
		{"root's directory in a sticky directory", `"allowed_write_paths": ["` + rootDir + `", "` + pub + `"]`, ""},
		{"root's program", `"command_whitelist": ["` + rootTool + `", "ls"]`, ""},
		{"user's directory in a sticky directory", `"allowed_write_paths": ["` + userDir + `"]`, "allowed_write_paths"},
		{"below a user's directory", `"allowed_read_paths": ["` + filepath.Join(userDir, "sub") + `"]`, "allowed_read_paths"},
		{"missing entry others could create", `"allowed_write_paths": ["` + filepath.Join(pub, "later") + `"]`, "allowed_write_paths"},
		{"entry through a symlink", `"allowed_read_paths": ["` + filepath.Join(link, "x") + `"]`, "allowed_read_paths"},
		{"program in a world-writable directory", `"command_whitelist": ["` + tool + `"]`, "command_whitelist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte("{"+tt.body+"}"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load accepted an entry another user could replace")
			}
			msg := err.Error()
			if !strings.Contains(msg, path+":1:") || !strings.Contains(msg, `key "`+tt.refuse+`"`) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming %s and key %q", msg, path, tt.refuse)
			}
		})
	}
}
