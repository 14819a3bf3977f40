package methods

import (
	"time"

	"github.com/kvmmanager/guest-agent/agent/server"
)

// The protocol 1.1 methods (background commands, file_stat, the guest
// operations: fsfreeze, time, accounts, ...) and the
// QGA dialect's back end are built on Linux interfaces and are not offered
// on Windows yet: their methods are absent from the handler table, so a
// host gets -32601 (method not found), and get_agent_info does not list
// them.

func (s *Service) initGuest() {}

func (s *Service) guestOpsHandlers() map[string]server.Handler { return nil }

// methods11 is empty: the protocol 1.1 methods (background commands,
// file_stat, guest operations) are absent on Windows (-32601) and
// get_agent_info does not list them.
func (s *Service) methods11() map[string]server.Handler { return nil }

// jobTable would hold background commands (exec_start), which Windows does
// not offer yet.
type jobTable struct{}

// defaultFileTimeout bounds each file_read and file_write.
const defaultFileTimeout = 60 * time.Second

// uploadTable would hold chunked file_writes (transfer.go), which Windows
// does not offer yet: file_write there takes the whole content at once.
type uploadTable struct{}

const defaultUploadIdle = 10 * time.Minute

// KillJobs has nothing to kill: Windows has no background commands yet
// (exec_command's own job objects die with their requests).
func (s *Service) KillJobs(time.Duration) {}
