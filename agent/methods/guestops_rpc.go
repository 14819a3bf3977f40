//go:build !windows

package methods

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// guestOpsHandlers are the protocol 1.1 methods of the guest operations:
// the same back end as the QGA dialect's commands, with snake_case params
// and results (agent/protocol/guestops.go).
func (s *Service) guestOpsHandlers() map[string]server.Handler {
	return map[string]server.Handler{
		protocol.MethodFsfreezeStatus:          s.rpcFsfreezeStatus,
		protocol.MethodFsfreezeFreeze:          s.rpcFsfreezeFreeze,
		protocol.MethodFsfreezeThaw:            s.rpcFsfreezeThaw,
		protocol.MethodGetTime:                 s.rpcGetTime,
		protocol.MethodSetTime:                 s.rpcSetTime,
		protocol.MethodGetUsers:                s.rpcGetUsers,
		protocol.MethodGetTimezone:             s.rpcGetTimezone,
		protocol.MethodGetLoad:                 s.rpcGetLoad,
		protocol.MethodGetMemoryInfo:           s.rpcGetMemoryInfo,
		protocol.MethodGetCPUStats:             s.rpcGetCPUStats,
		protocol.MethodGetDiskStats:            s.rpcGetDiskStats,
		protocol.MethodSSHGetAuthorizedKeys:    s.rpcSSHGetAuthorizedKeys,
		protocol.MethodSSHAddAuthorizedKeys:    s.rpcSSHAddAuthorizedKeys,
		protocol.MethodSSHRemoveAuthorizedKeys: s.rpcSSHRemoveAuthorizedKeys,
		protocol.MethodSetUserPassword:         s.rpcSetUserPassword,
	}
}

// rpcError maps a back-end error to the wire's codes: a bad request
// -32602, a missing user -32002, a configuration refusal -32001, anything
// else (frozen, no RTC, a failed system call or program) -32000.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, ErrInvalidArgument):
		return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: %s", err.Error())
	case errors.Is(err, ErrNotFound):
		return protocol.Errorf(protocol.CodeNotFound, "%s", err.Error())
	case errors.Is(err, ErrNotAllowed):
		return protocol.Errorf(protocol.CodePermissionDenied, "%s", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return protocol.Errorf(protocol.CodeInternalError, "%s", err.Error())
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "%s", err.Error())
}

func (s *Service) rpcFsfreezeStatus(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return s.FsfreezeStatus(), nil
}

func (s *Service) rpcFsfreezeFreeze(ctx context.Context, params json.RawMessage) (any, error) {
	var p protocol.FsfreezeFreezeParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	res, err := s.FsfreezeFreeze(ctx, p.Mountpoints)
	if err != nil {
		return nil, rpcError(err)
	}
	return res, nil
}

func (s *Service) rpcFsfreezeThaw(ctx context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	n, err := s.FsfreezeThaw(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	return protocol.FsfreezeThawResult{Thawed: n}, nil
}

func (s *Service) rpcGetTime(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return s.GetTime(), nil
}

func (s *Service) rpcSetTime(ctx context.Context, params json.RawMessage) (any, error) {
	var p protocol.SetTimeParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	res, err := s.SetTime(ctx, p.TimeNs)
	if err != nil {
		return nil, rpcError(err)
	}
	return res, nil
}

func (s *Service) rpcGetUsers(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	users, err := s.Users()
	if err != nil {
		return nil, rpcError(err)
	}
	return protocol.Users{Users: users}, nil
}

func (s *Service) rpcGetTimezone(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	return s.Timezone(), nil
}

func (s *Service) rpcGetLoad(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	l, err := s.LoadAverage()
	if err != nil {
		return nil, rpcError(err)
	}
	return l, nil
}

func (s *Service) rpcGetMemoryInfo(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	m, err := s.MemoryInfo()
	if err != nil {
		return nil, rpcError(err)
	}
	return m, nil
}

func (s *Service) rpcGetCPUStats(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	cpus, err := s.CPUStats()
	if err != nil {
		return nil, rpcError(err)
	}
	return protocol.CPUStatsResult{CPUs: cpus}, nil
}

func (s *Service) rpcGetDiskStats(_ context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	disks, err := s.DiskStats()
	if err != nil {
		return nil, rpcError(err)
	}
	return protocol.DiskStatsResult{Disks: disks}, nil
}

// sshParams decodes the params of the ssh_* methods: username is required,
// and keys too when needKeys.
func sshParams(params json.RawMessage, needKeys, allowReset bool) (protocol.SSHKeysParams, error) {
	var p struct {
		Username string    `json:"username"`
		Keys     *[]string `json:"keys"`
		Reset    bool      `json:"reset"`
	}
	var err error
	switch {
	case !needKeys:
		var q struct {
			Username string `json:"username"`
		}
		err = decodeParams(params, &q)
		p.Username = q.Username
	case !allowReset:
		var q struct {
			Username string    `json:"username"`
			Keys     *[]string `json:"keys"`
		}
		err = decodeParams(params, &q)
		p.Username, p.Keys = q.Username, q.Keys
	default:
		err = decodeParams(params, &p)
	}
	if err != nil {
		return protocol.SSHKeysParams{}, err
	}
	if p.Username == "" {
		return protocol.SSHKeysParams{}, invalidParams(`"username" (a non-empty string) is required`)
	}
	out := protocol.SSHKeysParams{Username: p.Username, Reset: p.Reset}
	if needKeys {
		if p.Keys == nil {
			return out, invalidParams(`"keys" (an array of public keys) is required`)
		}
		out.Keys = *p.Keys
	}
	return out, nil
}

func (s *Service) rpcSSHGetAuthorizedKeys(_ context.Context, params json.RawMessage) (any, error) {
	p, err := sshParams(params, false, false)
	if err != nil {
		return nil, err
	}
	keys, err := s.SSHAuthorizedKeys(p.Username)
	if err != nil {
		return nil, rpcError(err)
	}
	return protocol.SSHAuthorizedKeys{Keys: keys}, nil
}

// rpcSSHAddAuthorizedKeys returns the user's keys after the change.
func (s *Service) rpcSSHAddAuthorizedKeys(_ context.Context, params json.RawMessage) (any, error) {
	p, err := sshParams(params, true, true)
	if err != nil {
		return nil, err
	}
	if err := s.SSHAddAuthorizedKeys(p.Username, p.Keys, p.Reset); err != nil {
		return nil, rpcError(err)
	}
	keys, err := s.SSHAuthorizedKeys(p.Username)
	if err != nil {
		return nil, rpcError(err)
	}
	return protocol.SSHAuthorizedKeys{Keys: keys}, nil
}

// rpcSSHRemoveAuthorizedKeys returns the user's keys after the change.
func (s *Service) rpcSSHRemoveAuthorizedKeys(_ context.Context, params json.RawMessage) (any, error) {
	p, err := sshParams(params, true, false)
	if err != nil {
		return nil, err
	}
	if err := s.SSHRemoveAuthorizedKeys(p.Username, p.Keys); err != nil {
		return nil, rpcError(err)
	}
	keys, err := s.SSHAuthorizedKeys(p.Username)
	if err != nil {
		return nil, rpcError(err)
	}
	return protocol.SSHAuthorizedKeys{Keys: keys}, nil
}

func (s *Service) rpcSetUserPassword(ctx context.Context, params json.RawMessage) (any, error) {
	var p struct {
		Username string  `json:"username"`
		Password *string `json:"password"`
		Crypted  bool    `json:"crypted"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Username == "" || p.Password == nil {
		return nil, invalidParams(`"username" and "password" (strings) are required`)
	}
	if err := s.SetUserPassword(ctx, p.Username, *p.Password, p.Crypted); err != nil {
		return nil, rpcError(err)
	}
	return struct{}{}, nil
}
