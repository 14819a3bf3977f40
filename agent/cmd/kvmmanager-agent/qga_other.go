//go:build !windows

package main

import (
	"log/slog"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga"
	"github.com/kvmmanager/guest-agent/agent/server"
	"github.com/kvmmanager/guest-agent/agent/transport"
)

// newQGADialect is the QEMU guest agent dialect over svc.
func newQGADialect(svc *methods.Service, cfg *config.Config, log *slog.Logger, budget *server.Budget) transport.Server {
	return qga.New(svc, cfg, qga.Options{Logger: log, MaxObject: protocol.LineLimit(cfg.MaxFileSizeBytes), Budget: budget})
}

// qemuGARunning names a running qemu-ga, which keeps the QGA port.
func qemuGARunning() string { return qga.QemuGARunning("/proc") }
