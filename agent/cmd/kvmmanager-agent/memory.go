package main

import (
	"os"
	"runtime/debug"

	"github.com/kvmmanager/guest-agent/agent/config"
)

// tuneMemory sets a soft memory limit for the Go runtime, unless GOMEMLIMIT
// is set. The agent is idle almost always and then briefly handles one big
// file (up to max_file_size_bytes, base64 on the wire): without a limit the
// heap may grow to twice its peak live size before collecting. The limit
// makes the collector work harder instead, near a budget of a few copies of
// the largest request plus a base; it is soft, so a larger real need still
// succeeds.
func tuneMemory(cfg *config.Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	line := 4*((cfg.MaxFileSizeBytes+2)/3) + 64<<10
	debug.SetMemoryLimit(16<<20 + 3*line)
}
