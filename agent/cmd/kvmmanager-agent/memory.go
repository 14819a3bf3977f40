package main

import (
	"os"
	"runtime/debug"

	"github.com/kvmmanager/guest-agent/agent/config"
)

// runtimeBase is what the agent holds beside its memory budget: the Go
// runtime, goroutine stacks, the buffers every connection has (64 KiB read
// buffer, up to 512 KiB of small replies queued), the small replies and
// params no budget counts.
const runtimeBase = 16 << 20

// tuneMemory sets a soft memory limit for the Go runtime, unless GOMEMLIMIT
// is set: max_memory_bytes, which bounds what requests and replies in
// flight hold, plus runtimeBase. Without a limit the heap may grow to twice
// its peak live size before collecting (buffers of finished requests are
// garbage the collector has not met yet); the limit makes the collector run
// before the heap passes the budget instead. It is soft: a larger real need
// still succeeds, but the budget keeps the live part under it.
func tuneMemory(cfg *config.Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(cfg.MaxMemoryBytes + runtimeBase)
}
