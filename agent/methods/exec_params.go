package methods

import (
	"encoding/json"
	"strings"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// defaultExecTimeout is exec_command's timeout_seconds when the host gives
// none (bounded by command_timeout_seconds like any other).
const defaultExecTimeout = 30

// decodeExecParams decodes and checks exec_command's params the same way on
// every OS: the command is required, the timeout is at least 1 s and at most
// command_timeout_seconds, no argument holds a NUL byte. It returns the
// params, the timeout in seconds and whether output is captured.
func (s *Service) decodeExecParams(params json.RawMessage) (protocol.ExecParams, int, bool, error) {
	var p protocol.ExecParams
	if err := decodeParams(params, &p); err != nil {
		return p, 0, false, err
	}
	if p.Command == "" {
		return p, 0, false, invalidParams(`"command" is required`)
	}
	timeout := defaultExecTimeout
	if p.TimeoutSeconds != nil {
		if *p.TimeoutSeconds < 1 {
			return p, 0, false, invalidParams(`"timeout_seconds" must be at least 1, got %d`, *p.TimeoutSeconds)
		}
		timeout = *p.TimeoutSeconds
	}
	timeout = min(timeout, s.cfg.CommandTimeoutSeconds)
	capture := p.CaptureOutput == nil || *p.CaptureOutput
	for i, a := range p.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return p, 0, false, invalidParams("args[%d] contains a NUL byte", i)
		}
	}
	return p, timeout, capture, nil
}
