package methods

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// seedConfig loads the shipped packaging/config.json, the file the agent's
// tests must run against.
func seedConfig(t testing.TB) *config.Config {
	t.Helper()
	if runtime.GOOS == "windows" {
		return config.Default() // the shipped file holds Linux paths
	}
	cfg, err := config.Load(testenv.RepoPath(t, "packaging/config.json"))
	if err != nil {
		t.Fatalf("load seed config: %v", err)
	}
	return cfg
}

// newService returns a Service on the seed config changed by edit, with a
// power action that fails the test if used.
func newService(t testing.TB, edit func(*config.Config)) *Service {
	t.Helper()
	cfg := seedConfig(t)
	if edit != nil {
		edit(cfg)
	}
	return New(cfg, Options{Power: &fakePower{t: t}})
}

// call runs handler h with params (marshalled unless already raw) and
// returns the result as it would go on the wire.
func call(t testing.TB, h server.Handler, params any) (json.RawMessage, *protocol.Error) {
	t.Helper()
	var raw json.RawMessage
	switch p := params.(type) {
	case nil:
	case string:
		raw = json.RawMessage(p)
	default:
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		raw = b
	}
	res, err := h(context.Background(), raw)
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			t.Fatalf("handler returned %T %v, want *protocol.Error", err, err)
		}
		if res != nil {
			t.Fatalf("handler returned both a result and an error")
		}
		return nil, pe
	}
	b, merr := json.Marshal(res)
	if merr != nil {
		t.Fatalf("marshal result: %v", merr)
	}
	return b, nil
}

// mustCall is call that fails the test on an error and decodes into out.
func mustCall(t testing.TB, h server.Handler, params any, out any) json.RawMessage {
	t.Helper()
	b, perr := call(t, h, params)
	if perr != nil {
		t.Fatalf("call with %v: %v", params, perr)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("decode result %s: %v", b, err)
		}
	}
	return b
}

// wantError fails unless perr has code and a message containing each of parts.
func wantError(t testing.TB, perr *protocol.Error, code int, parts ...string) {
	t.Helper()
	if perr == nil {
		t.Fatalf("got success, want error %d", code)
	}
	if perr.Code != code {
		t.Fatalf("error %d %q, want code %d", perr.Code, perr.Message, code)
	}
	for _, p := range parts {
		if !strings.Contains(perr.Message, p) {
			t.Fatalf("error message %q does not contain %q", perr.Message, p)
		}
	}
}

func TestHandlersCoverEveryMethod(t *testing.T) {
	s := newService(t, nil)
	h := s.Handlers()
	all := append(slices.Clone(protocol.Methods), protocol.Methods11...)
	if runtime.GOOS == "windows" {
		// The 1.1 guest operations are Linux's so far: absent, -32601.
		all = slices.Clone(protocol.Methods)
		for _, m := range protocol.Methods11 {
			if h[m] != nil {
				t.Errorf("handler for %s on Windows", m)
			}
		}
	}
	for _, m := range all {
		if h[m] == nil {
			t.Errorf("no handler for %s", m)
		}
	}
	if len(h) != len(all) {
		t.Errorf("%d handlers, want %d (1.0 and 1.1)", len(h), len(all))
	}
}

func TestDisabledMethods(t *testing.T) {
	s := newService(t, func(c *config.Config) {
		c.DisabledMethods = []string{protocol.MethodExecCommand, protocol.MethodFileWrite}
	})
	h := s.Handlers()
	if h[protocol.MethodExecCommand] != nil || h[protocol.MethodFileWrite] != nil {
		t.Fatal("disabled methods still have handlers")
	}
	if h[protocol.MethodFileRead] == nil {
		t.Fatal("file_read missing")
	}
	var info protocol.AgentInfo
	mustCall(t, h[protocol.MethodGetAgentInfo], nil, &info)
	if slices.Contains(info.Capabilities, protocol.MethodExecCommand) || !slices.Contains(info.Capabilities, protocol.MethodFileRead) {
		t.Fatalf("capabilities %v do not reflect disabled_methods", info.Capabilities)
	}
}

func TestParamsDecoding(t *testing.T) {
	s := newService(t, nil)
	h := s.Handlers()
	tests := []struct {
		name   string
		method string
		params string
		code   int // 0: success
		parts  []string
	}{
		{"absent params", protocol.MethodPing, "", 0, nil},
		{"null params", protocol.MethodPing, "null", 0, nil},
		{"empty object", protocol.MethodPing, "{}", 0, nil},
		{"empty array", protocol.MethodPing, "[]", 0, nil},
		{"unknown field on ping", protocol.MethodPing, `{"x":1}`, protocol.CodeInvalidParams, []string{`unknown field "x"`}},
		{"unknown field names it", protocol.MethodFileRead, `{"path":"/etc/hostname","encodng":"utf8"}`, protocol.CodeInvalidParams, []string{`"encodng"`}},
		{"wrong type names field", protocol.MethodExecCommand, `{"command":"true","timeout_seconds":"5"}`, protocol.CodeInvalidParams, []string{`"timeout_seconds"`, "string"}},
		{"positional params", protocol.MethodFileRead, `["/etc/hostname"]`, protocol.CodeInvalidParams, []string{"array"}},
		{"scalar params", protocol.MethodFileRead, `"x"`, protocol.CodeInvalidParams, []string{"object"}},
		{"fractional integer", protocol.MethodSync, `{"id":1.5}`, protocol.CodeInvalidParams, []string{`"id"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, perr := call(t, h[tt.method], tt.params)
			if tt.code == 0 {
				if perr != nil {
					t.Fatalf("error %v", perr)
				}
				return
			}
			wantError(t, perr, tt.code, tt.parts...)
		})
	}
}

// The server answers NonBlocking methods on its reading goroutine, so they
// must be real methods and must never be the ones that touch the system
// (files, commands, power), which may block.
func TestNonBlockingMethods(t *testing.T) {
	s := newService(t, nil)
	h := s.Handlers()
	blocking := []string{protocol.MethodGetSystemInfo, protocol.MethodGetNetworkInfo, protocol.MethodGetDiskUsage,
		protocol.MethodExecCommand, protocol.MethodFileRead, protocol.MethodFileWrite, protocol.MethodShutdown, protocol.MethodReboot}
	for m := range s.NonBlocking() {
		if h[m] == nil {
			t.Errorf("NonBlocking names %q, which has no handler", m)
		}
		if slices.Contains(blocking, m) {
			t.Errorf("NonBlocking names %q, which does I/O", m)
		}
	}
}
