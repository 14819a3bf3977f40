//go:build !windows

package qga

import (
	"context"

	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
	"github.com/kvmmanager/guest-agent/agent/version"
)

// coreCommands: the protocol's own commands (sync, ping, info).
func (d *Dialect) coreCommands() []Command {
	return []Command{
		{Name: qapi.CmdSyncDelimited, Handler: Typed(d.sync), delimited: true, inline: true},
		{Name: qapi.CmdSync, Handler: Typed(d.sync), inline: true},
		{Name: qapi.CmdPing, Handler: NoArgs(d.ping), inline: true},
		{Name: qapi.CmdInfo, Handler: NoArgs(d.info), inline: true},
	}
}

// sync returns the id, so that a host can find its reply among stale ones.
func (d *Dialect) sync(_ context.Context, a *qapi.GuestSyncArgs) (int64, error) {
	return a.ID, nil
}

func (d *Dialect) ping(context.Context) (struct{}, error) { return struct{}{}, nil }

// info lists the registered commands, in registry order, with whether the
// config leaves them enabled.
func (d *Dialect) info(context.Context) (qapi.GuestAgentInfo, error) {
	out := qapi.GuestAgentInfo{Version: version.Version, SupportedCommands: []qapi.GuestAgentCommandInfo{}}
	for _, c := range d.cmds {
		out.SupportedCommands = append(out.SupportedCommands, qapi.GuestAgentCommandInfo{
			Name:            c.Name,
			Enabled:         d.enabled(c),
			SuccessResponse: !c.NoSuccessResponse,
		})
	}
	return out, nil
}
