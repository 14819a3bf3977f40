//go:build !windows

package methods

import (
	"maps"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// methods11 are the protocol 1.1 handlers: background commands, file_stat
// and the guest operations.
func (s *Service) methods11() map[string]server.Handler {
	all := map[string]server.Handler{
		protocol.MethodExecStart:  s.execStart,
		protocol.MethodExecStatus: s.execStatus,
		protocol.MethodExecKill:   s.execKill,
		protocol.MethodFileStat:   s.fileStat,
	}
	maps.Copy(all, s.guestOpsHandlers())
	return all
}
