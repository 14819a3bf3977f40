package methods

import (
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

type powerCall struct {
	kind  PowerKind
	force bool
	grace time.Duration
}

// fakePower records power actions; without a channel it fails the test.
type fakePower struct {
	t     testing.TB
	calls chan powerCall
}

func (f *fakePower) Power(kind PowerKind, force bool, grace time.Duration) error {
	if f.calls == nil {
		f.t.Errorf("unexpected power action %v force=%v", kind, force)
		return nil
	}
	f.calls <- powerCall{kind, force, grace}
	return nil
}

func TestPowerMethods(t *testing.T) {
	tests := []struct {
		method string
		params string
		want   powerCall
		msg    string
	}{
		{protocol.MethodShutdown, ``, powerCall{PowerOff, false, 60 * time.Second}, "power off"},
		{protocol.MethodShutdown, `{"force":true}`, powerCall{PowerOff, true, 0}, "forced"},
		{protocol.MethodShutdown, `{"force":true,"timeout_seconds":9}`, powerCall{PowerOff, true, 9 * time.Second}, "forced after 9s"},
		{protocol.MethodReboot, `{"timeout_seconds":5}`, powerCall{Reboot, false, 5 * time.Second}, "reboot"},
		{protocol.MethodReboot, `{"timeout_seconds":0,"force":false}`, powerCall{Reboot, false, 0}, "never forced"},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.params, func(t *testing.T) {
			fp := &fakePower{t: t, calls: make(chan powerCall, 1)}
			s := New(seedConfig(t), Options{Power: fp})
			var r protocol.PowerResult
			mustCall(t, s.Handlers()[tt.method], tt.params, &r)
			if !r.Initiated || !strings.Contains(r.Message, tt.msg) {
				t.Fatalf("result %+v, want initiated and a message with %q", r, tt.msg)
			}
			// With a context that is not a server request's, AfterResponse
			// runs at once, and the action runs in its own goroutine.
			if got := <-fp.calls; got != tt.want {
				t.Fatalf("power action %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPowerInvalidParams(t *testing.T) {
	s := newService(t, nil) // its fake power fails the test if called
	for _, params := range []string{`{"timeout_seconds":-1}`, `{"timeout_seconds":86401}`, `{"force":"yes"}`, `{"delay":1}`} {
		_, perr := call(t, s.Handlers()[protocol.MethodShutdown], params)
		wantError(t, perr, protocol.CodeInvalidParams)
	}
}
