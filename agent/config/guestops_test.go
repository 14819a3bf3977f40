package config

import (
	"strings"
	"testing"
)

func TestMaxBackgroundSeconds(t *testing.T) {
	if d := Default(); d.MaxBackgroundSeconds != 3600 {
		t.Errorf("default max_background_seconds %d, want 3600", d.MaxBackgroundSeconds)
	}
	for _, tt := range []struct {
		in      string
		want    int
		wantErr string
	}{
		{`{"max_background_seconds": 60}`, 60, ""},
		{`{"max_background_seconds": 604800}`, 604800, ""},
		{`{"max_background_seconds": 0}`, 0, `c.json:1:2: key "max_background_seconds": must be between 1 and 604800, got 0`},
		{`{"max_background_seconds": 604801}`, 0, `key "max_background_seconds": must be between 1 and 604800`},
		{`{"max_background_seconds": "1h"}`, 0, `key "max_background_seconds"`},
	} {
		c, err := Parse("c.json", []byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || c.MaxBackgroundSeconds != tt.want {
			t.Errorf("%s: %v %v", tt.in, c, err)
		}
	}
}

// A configuration written for 1.0 keeps its meaning: the 1.1 methods that
// reach a disabled 1.0 operation are disabled with it.
func TestMethodDisabledImplied(t *testing.T) {
	c, err := Parse("c.json", []byte(`{"disabled_methods": ["exec_command", "file_read"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]bool{
		"exec_start": true, "exec_status": true, "exec_kill": true, "file_stat": true,
		"file_write": false, "get_time": false, "exec_command": true,
	} {
		if got := c.MethodDisabled(m); got != want {
			t.Errorf("MethodDisabled(%q) = %v, want %v", m, got, want)
		}
	}
	c, _ = Parse("c.json", []byte(`{"disabled_methods": ["exec_start"]}`))
	if c.MethodDisabled("exec_command") || !c.MethodDisabled("exec_start") || c.MethodDisabled("exec_status") {
		t.Errorf("exec_start alone: exec_command %v exec_start %v exec_status %v", c.MethodDisabled("exec_command"), c.MethodDisabled("exec_start"), c.MethodDisabled("exec_status"))
	}
}

func TestGuestOpsKeys(t *testing.T) {
	d := Default()
	if d.FsfreezeTimeoutSeconds != 60 || d.AllowAccountChanges {
		t.Errorf("defaults: fsfreeze_timeout_seconds %d, allow_account_changes %v; want 60, false", d.FsfreezeTimeoutSeconds, d.AllowAccountChanges)
	}
	c, err := Parse("c.json", []byte(`{"fsfreeze_timeout_seconds": 300, "allow_account_changes": true, "disabled_methods": ["set_user_password", "guest-ssh-add-authorized-keys"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.FsfreezeTimeoutSeconds != 300 || !c.AllowAccountChanges || !c.MethodDisabled("set_user_password") {
		t.Errorf("parsed %+v", c)
	}
	for _, tt := range []struct{ in, want string }{
		{`{"fsfreeze_timeout_seconds": 0}`, `c.json:1:2: key "fsfreeze_timeout_seconds": must be between 1 and 3600, got 0`},
		{`{"fsfreeze_timeout_seconds": 3601}`, `key "fsfreeze_timeout_seconds": must be between 1 and 3600, got 3601`},
		{`{"fsfreeze_timeout_seconds": "60"}`, `key "fsfreeze_timeout_seconds": wrong type: got JSON string, want an integer`},
		{`{"allow_account_changes": "yes"}`, `key "allow_account_changes": wrong type: got JSON string, want a boolean`},
		{`{"disabled_methods": ["get_userz"]}`, `key "disabled_methods": unknown method "get_userz"`},
	} {
		_, err := Parse("c.json", []byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%s) = %v, want %q", tt.in, err, tt.want)
		}
	}
}
