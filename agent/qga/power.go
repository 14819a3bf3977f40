//go:build !windows

package qga

import (
	"context"

	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// powerCommands: guest-shutdown (no reply on success, as the schema says).
func (d *Dialect) powerCommands() []Command {
	return []Command{
		{Name: qapi.CmdShutdown, Handler: Typed(d.shutdown), NoSuccessResponse: true},
	}
}

// shutdown asks the init system (systemctl, shutdown, busybox poweroff,
// never D-Bus) and forces reboot(2) if the machine is still up a minute
// later. "halt" powers off too: a halted VM would sit with its CPUs
// stopped. disabled_methods "shutdown" disables powerdown and halt,
// "reboot" disables reboot.
func (d *Dialect) shutdown(_ context.Context, a *qapi.GuestShutdownArgs) (any, error) {
	mode := qapi.ShutdownPowerdown
	if a.Mode != nil {
		mode = *a.Mode
	}
	kind, method := methods.PowerOff, protocol.MethodShutdown
	switch mode {
	case qapi.ShutdownPowerdown, qapi.ShutdownHalt:
	case qapi.ShutdownReboot:
		kind, method = methods.Reboot, protocol.MethodReboot
	default:
		return nil, Errorf("mode is invalid (valid values are: halt|powerdown|reboot")
	}
	if d.cfg.MethodDisabled(method) {
		return nil, errDisabled(qapi.CmdShutdown)
	}
	d.svc.RequestPower(kind)
	return nil, nil
}
