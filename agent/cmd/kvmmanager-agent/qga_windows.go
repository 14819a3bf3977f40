package main

import (
	"log/slog"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/server"
	"github.com/kvmmanager/guest-agent/agent/transport"
)

// newQGADialect is nil: the QGA dialect's back end (agent/qga over the
// guest operations) is Linux's; on Windows qemu-ga from virtio-win serves
// org.qemu.guest_agent.0.
func newQGADialect(*methods.Service, *config.Config, *slog.Logger, *server.Budget) transport.Server {
	return nil
}

func qemuGARunning() string { return "" }
