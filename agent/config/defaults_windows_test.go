package config

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The Windows defaults are what `service install` writes; they must parse
// back to themselves under the same strict rules.
func TestWindowsDefaultsRoundTrip(t *testing.T) {
	b, err := json.MarshalIndent(Default(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("config.json", b)
	if err != nil {
		t.Fatalf("Parse(defaults): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("defaults changed by a round trip: %+v", c)
	}
	if !strings.HasSuffix(strings.ToLower(DefaultPath), `\kvmmanager-agent\config.json`) {
		t.Errorf("DefaultPath = %q", DefaultPath)
	}
}

func TestWindowsPathsAndCommands(t *testing.T) {
	tests := []struct {
		json, key string // key "" means valid
	}{
		{`{"allowed_read_paths": ["C:\\Windows\\Temp", "D:\\data"]}`, ""},
		{`{"allowed_write_paths": ["c:/windows/temp"]}`, ""},
		{`{"allowed_read_paths": ["/etc"]}`, "allowed_read_paths"},
		{`{"allowed_read_paths": ["\\Windows\\Temp"]}`, "allowed_read_paths"},
		{`{"allowed_write_paths": ["C:Temp"]}`, "allowed_write_paths"},
		{`{"command_whitelist": ["ipconfig", "C:\\Windows\\System32\\whoami.exe"]}`, ""},
		{`{"command_whitelist": ["bin\\tool.exe"]}`, "command_whitelist"},
		{`{"command_whitelist": ["C:tool.exe"]}`, "command_whitelist"},
		{`{"allowed_read_path": ["C:\\"]}`, "allowed_read_path"},
	}
	for _, tt := range tests {
		_, err := Parse("config.json", []byte(tt.json))
		switch {
		case tt.key == "" && err != nil:
			t.Errorf("%s: %v", tt.json, err)
		case tt.key != "" && (err == nil || !strings.Contains(err.Error(), `"`+tt.key+`"`)):
			t.Errorf("%s: err = %v, want one naming %q", tt.json, err, tt.key)
		}
	}
}
