package qapi

import (
	"strings"
	"testing"
)

func TestCheckShape(t *testing.T) {
	tests := []struct {
		raw  string
		v    any
		want string // "" valid, else a substring of the error
	}{
		{`{"version":"1","supported_commands":[{"name":"guest-ping","enabled":true,"success-response":true}]}`, GuestAgentInfo{}, ""},
		{`{"version":"1"}`, GuestAgentInfo{}, `required member "supported_commands"`},
		{`{"version":"1","supported_commands":[],"x":1}`, GuestAgentInfo{}, `["x"] are not in GuestAgentInfo`},
		{`{"version":1,"supported_commands":[]}`, GuestAgentInfo{}, "want a string"},
		{`[{"logical-id":0,"online":true}]`, []GuestLogicalProcessor{}, ""},
		{`[{"logical-id":0.5,"online":true}]`, []GuestLogicalProcessor{}, "want an integer"},
		{`[{"name":"lo","ip-addresses":[{"ip-address":"::1","ip-address-type":"ipv7","prefix":128}]}]`, []GuestNetworkInterface{}, `"ipv7" is not a GuestIpAddressType`},
		{`[{"type":"linux","cpu":0,"user":1,"nice":2,"system":3,"idle":4,"iowait":5}]`, []GuestCpuStats{}, ""},
		{`[{"type":"linux","cpu":0,"user":1,"nice":2,"system":3}]`, []GuestCpuStats{}, `required member "idle"`},
		{`{"rx-bytes":-1}`, GuestNetworkInterfaceStat{}, "want an unsigned integer"},
		{`5`, int64(0), ""},
		{`{"load1":0.5,"load5":1,"load15":2}`, GuestLoadAverage{}, ""},
	}
	for _, tt := range tests {
		err := CheckShape([]byte(tt.raw), tt.v)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.raw, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.raw, err, tt.want)
		}
	}
}
