package methods

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/version"
)

func TestPing(t *testing.T) {
	s := newService(t, nil)
	before := time.Now().Unix()
	var r protocol.PingResult
	raw := mustCall(t, s.Handlers()[protocol.MethodPing], nil, &r)
	after := time.Now().Unix()
	if !r.Pong || r.Timestamp < before || r.Timestamp > after {
		t.Fatalf("ping = %s, want pong true and a timestamp in [%d, %d]", raw, before, after)
	}
}

func TestAgentInfo(t *testing.T) {
	s := newService(t, nil)
	var r protocol.AgentInfo
	mustCall(t, s.Handlers()[protocol.MethodGetAgentInfo], nil, &r)
	// Protocol 1.1: the 1.0 methods first, in their order, then 1.1's.
	if r.Version != version.Version || r.ProtocolVersion != "1.1.0" || r.Platform != runtime.GOOS {
		t.Fatalf("agent info %+v", r)
	}
	all := append(slices.Clone(protocol.Methods), protocol.Methods11...)
	if runtime.GOOS == "windows" {
		all = slices.Clone(protocol.Methods) // the 1.1 methods are Linux's so far
	}
	if !slices.Equal(r.Capabilities, all) {
		t.Fatalf("capabilities %v, want every method %v", r.Capabilities, all)
	}
}

func TestSync(t *testing.T) {
	s := newService(t, nil)
	h := s.Handlers()[protocol.MethodSync]
	tests := []struct {
		params string
		want   string
		code   int
	}{
		{`{"id":42}`, "42", 0},
		{`{"id":-7}`, "-7", 0},
		{`{"id":9007199254740993}`, "9007199254740993", 0},
		{`{}`, "", protocol.CodeInvalidParams},
		{``, "", protocol.CodeInvalidParams},
		{`{"id":"42"}`, "", protocol.CodeInvalidParams},
		{`{"id":1,"x":2}`, "", protocol.CodeInvalidParams},
	}
	for _, tt := range tests {
		got, perr := call(t, h, tt.params)
		if tt.code != 0 {
			wantError(t, perr, tt.code)
			continue
		}
		if perr != nil || string(got) != tt.want {
			t.Errorf("sync %s = %s, %v; want %s", tt.params, got, perr, tt.want)
		}
	}
}
