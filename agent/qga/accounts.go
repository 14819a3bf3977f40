//go:build !windows

package qga

import (
	"context"
	"encoding/base64"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// accountCommands: passwords and SSH keys. The changes need
// allow_account_changes in the agent's configuration (off by default).
func (d *Dialect) accountCommands() []Command {
	return []Command{
		{Name: qapi.CmdSetUserPassword, Handler: Typed(d.setUserPassword), Method: protocol.MethodSetUserPassword},
		{Name: qapi.CmdSSHGetAuthorizedKeys, Handler: Typed(d.sshGetAuthorizedKeys), Method: protocol.MethodSSHGetAuthorizedKeys},
		{Name: qapi.CmdSSHAddAuthorizedKeys, Handler: Typed(d.sshAddAuthorizedKeys), Method: protocol.MethodSSHAddAuthorizedKeys},
		{Name: qapi.CmdSSHRemoveAuthorizedKey, Handler: Typed(d.sshRemoveAuthorizedKeys), Method: protocol.MethodSSHRemoveAuthorizedKeys},
	}
}

// setUserPassword: the password (or hash) arrives base64-encoded.
func (d *Dialect) setUserPassword(ctx context.Context, a *qapi.GuestSetUserPasswordArgs) (struct{}, error) {
	pw, err := base64.StdEncoding.DecodeString(a.Password)
	if err != nil {
		return struct{}{}, Errorf("Base64 data contains invalid characters")
	}
	return struct{}{}, d.svc.SetUserPassword(ctx, a.Username, string(pw), a.Crypted)
}

func (d *Dialect) sshGetAuthorizedKeys(_ context.Context, a *qapi.GuestSSHUserArgs) (qapi.GuestAuthorizedKeys, error) {
	keys, err := d.svc.SSHAuthorizedKeys(a.Username)
	if err != nil {
		return qapi.GuestAuthorizedKeys{}, err
	}
	return qapi.GuestAuthorizedKeys{Keys: keys}, nil
}

func (d *Dialect) sshAddAuthorizedKeys(_ context.Context, a *qapi.GuestSSHAddAuthorizedKeysArgs) (struct{}, error) {
	reset := a.Reset != nil && *a.Reset
	return struct{}{}, d.svc.SSHAddAuthorizedKeys(a.Username, a.Keys, reset)
}

func (d *Dialect) sshRemoveAuthorizedKeys(_ context.Context, a *qapi.GuestSSHRemoveAuthorizedKeysArgs) (struct{}, error) {
	return struct{}{}, d.svc.SSHRemoveAuthorizedKeys(a.Username, a.Keys)
}
