//go:build !windows

package qga

import (
	"context"
	"encoding/json"
	"fmt"
)

// The guest operations shared with protocol 1.1 (agent/methods'
// guestops): each QGA command here maps to one exported method of
// methods.Service, and to the protocol 1.1 method whose name in
// disabled_methods also disables it.

// errFrozen is qemu-ga's refusal of a command outside its freeze
// allow-list while file systems are frozen.
func errFrozen(name string) *Error {
	return &Error{Class: ClassCommandNotFound, Desc: fmt.Sprintf("Command %s has been disabled: the agent is in frozen state", name)}
}

// unlessFrozen wraps each command's handler so that it is refused while the
// agent holds file systems frozen (qemu-ga allows only ping, info, sync,
// fsfreeze-status and fsfreeze-thaw then): nothing the agent does may
// write to a frozen file system and block behind it.
func (d *Dialect) unlessFrozen(cmds []Command) []Command {
	for i := range cmds {
		name, h := cmds[i].Name, cmds[i].Handler
		cmds[i].Handler = func(ctx context.Context, args json.RawMessage) (any, error) {
			if d.svc.Frozen() {
				return nil, errFrozen(name)
			}
			return h(ctx, args)
		}
	}
	return cmds
}
