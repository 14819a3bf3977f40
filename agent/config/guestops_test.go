package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func TestKnownGuestOpsMethodsMatchProtocol(t *testing.T) {
	if !reflect.DeepEqual(knownGuestOpsMethods, protocol.GuestOpsMethods) {
		t.Errorf("config.knownGuestOpsMethods = %q, protocol.GuestOpsMethods = %q", knownGuestOpsMethods, protocol.GuestOpsMethods)
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
