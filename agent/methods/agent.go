package methods

import (
	"context"
	"encoding/json"
	"runtime"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/version"
)

// ping: {pong: true, timestamp: unix seconds}.
func (s *Service) ping(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return protocol.PingResult{Pong: true, Timestamp: time.Now().Unix()}, nil
}

// get_agent_info: version, protocol version, platform and the enabled methods.
func (s *Service) agentInfo(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return protocol.AgentInfo{
		Version:         version.Version,
		ProtocolVersion: protocol.Version,
		Platform:        runtime.GOOS, // "linux" or "windows"
		Capabilities:    s.capabilities(),
	}, nil
}

// sync: {"id": N} returns N, so that a host can find the reply to its own
// resync request among stale ones.
func (s *Service) sync(_ context.Context, params json.RawMessage) (any, error) {
	var p struct {
		ID *int64 `json:"id"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.ID == nil {
		return nil, invalidParams(`"id" (an integer) is required`)
	}
	return *p.ID, nil
}
