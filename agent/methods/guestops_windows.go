package methods

import (
	"time"

	"github.com/kvmmanager/guest-agent/agent/server"
)

// The protocol 1.1 guest operations (fsfreeze, time, accounts, ...) and the
// QGA dialect's back end are built on Linux interfaces and are not offered
// on Windows yet: their methods are absent from the handler table, so a
// host gets -32601 (method not found), and get_agent_info does not list
// them.

func (s *Service) initGuest() {}

func (s *Service) guestOpsHandlers() map[string]server.Handler { return nil }

// defaultFileTimeout bounds each file_read and file_write.
const defaultFileTimeout = 60 * time.Second
