//go:build !windows

package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// The shipped config must be exactly the built-in defaults: the previous
// agent shipped a file whose schema the code did not read.
func TestShippedConfigMatchesDefaults(t *testing.T) {
	path := testenv.RepoPath(t, "packaging/config.json")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("packaging/config.json = %+v\nwant defaults %+v", c, Default())
	}
}

func TestMissingFileGivesDefaults(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(err, ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("config = %+v, want defaults", c)
	}
}

func TestPartialFileKeepsDefaults(t *testing.T) {
	c, err := Parse("c.json", []byte(`{"command_timeout_seconds": 5, "allowed_read_paths": ["/var/log/"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.CommandTimeoutSeconds != 5 || c.MaxFileSizeBytes != 10485760 || c.MaxConcurrentRequests != 10 {
		t.Errorf("got %+v", c)
	}
	if want := []string{"/var/log"}; !reflect.DeepEqual(c.AllowedReadPaths, want) {
		t.Errorf("allowed_read_paths = %q, want cleaned %q", c.AllowedReadPaths, want)
	}
}

func TestBadConfigErrors(t *testing.T) {
	tests := []struct {
		name, data string
		want       []string // substrings of the one-line error
	}{
		{"syntax", "{\n  \"log_level\": \"info\",,\n}", []string{"c.json:2:", "invalid JSON"}},
		{"truncated", `{"log_level": "info"`, []string{"c.json:1:", "invalid JSON"}},
		{"not object", `[1]`, []string{"c.json:1:1", "top level must be a JSON object"}},
		{"unknown key", "{\n  \"log_level\": \"info\",\n  \"allowed_read_path\": []\n}", []string{"c.json:3:3", `key "allowed_read_path"`, "unknown key"}},
		{"wrong type", `{"command_timeout_seconds": "30"}`, []string{"c.json:1:2", `key "command_timeout_seconds"`, "wrong type", "integer"}},
		{"wrong type bool", `{"command_whitelist_enabled": 1}`, []string{`key "command_whitelist_enabled"`, "boolean"}},
		{"null", `{"allowed_write_paths": null}`, []string{`key "allowed_write_paths"`, "null"}},
		{"relative path", `{"allowed_write_paths": ["tmp"]}`, []string{`key "allowed_write_paths"`, `"tmp" is not absolute`}},
		{"zero timeout", `{"command_timeout_seconds": 0}`, []string{`key "command_timeout_seconds"`, "between 1 and"}},
		{"negative size", `{"max_file_size_bytes": -1}`, []string{`key "max_file_size_bytes"`}},
		{"huge size", `{"max_file_size_bytes": 99999999999}`, []string{`key "max_file_size_bytes"`}},
		{"float timeout", `{"command_timeout_seconds": 1.5}`, []string{`key "command_timeout_seconds"`}},
		{"bad level", `{"log_level": "verbose"}`, []string{`key "log_level"`, "debug, info, warn, error"}},
		{"duplicate", `{"log_level": "info", "log_level": "debug"}`, []string{`key "log_level"`, "duplicate"}},
		{"relative whitelist", `{"command_whitelist": ["bin/ls"]}`, []string{`key "command_whitelist"`}},
		{"bad method", `{"disabled_methods": ["rm_rf"]}`, []string{`key "disabled_methods"`, `"rm_rf"`}},
		{"bad qga method", `{"disabled_methods": ["guest-rm-rf"]}`, []string{`key "disabled_methods"`, `"guest-rm-rf"`}},
		{"bad qga_port", `{"qga_port": "on"}`, []string{`key "qga_port"`, `"auto" or "off"`}},
		{"qga_port type", `{"qga_port": false}`, []string{`key "qga_port"`, "wrong type", "a string"}},
		{"trailing", `{} {}`, []string{"unexpected data"}},
		{"concurrency", `{"max_concurrent_requests": 0}`, []string{`key "max_concurrent_requests"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.json", []byte(tt.data))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || errors.Is(err, ErrNotExist) {
		t.Fatalf("Load(directory) = %v, want a read error", err)
	}
	_ = os.Remove(dir)
}

// Every method of both protocol versions can be disabled by its name.
func TestDisableEveryProtocolMethod(t *testing.T) {
	for _, m := range append(slices.Clip(protocol.Methods), protocol.Methods11...) {
		c, err := Parse("c.json", []byte(`{"disabled_methods": ["`+m+`"]}`))
		if err != nil || !c.MethodDisabled(m) {
			t.Errorf("disabled_methods [%q]: %v, disabled %v", m, err, err == nil && c.MethodDisabled(m))
		}
	}
}

// disabled_methods takes both dialects' names; qga_port takes auto and off.
func TestQGAKeys(t *testing.T) {
	c, err := Parse("c.json", []byte(`{"disabled_methods": ["exec_command", "guest-exec", "guest-file-open"], "qga_port": "off"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.MethodDisabled("guest-exec") || !c.MethodDisabled("exec_command") || c.MethodDisabled("guest-ping") {
		t.Errorf("MethodDisabled wrong for %q", c.DisabledMethods)
	}
	if c.QGAPort != QGAPortOff {
		t.Errorf("qga_port = %q, want off", c.QGAPort)
	}
	if Default().QGAPort != QGAPortAuto {
		t.Errorf("default qga_port = %q, want auto", Default().QGAPort)
	}
}
