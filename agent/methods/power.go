package methods

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// PowerKind is what a power request asks for.
type PowerKind int

// Power kinds.
const (
	PowerOff PowerKind = iota
	Reboot
)

func (k PowerKind) String() string {
	if k == Reboot {
		return "reboot"
	}
	return "power off"
}

// PowerAction powers off or reboots the machine. The shutdown and reboot
// methods call it in a goroutine of its own once their reply has been
// written. Not forced, it asks the init system and never does more: if the
// machine is still up after grace (0: no limit), it only logs it. Forced
// with a grace, it asks the init system first and forces it (reboot(2))
// if the machine is still up after grace; forced without one (0), it forces
// at once. An error means the machine could not be powered off or rebooted.
type PowerAction interface {
	Power(kind PowerKind, force bool, grace time.Duration) error
}

const (
	defaultPowerTimeout = 60
	maxPowerTimeout     = 86400
)

func (s *Service) shutdown(ctx context.Context, params json.RawMessage) (any, error) {
	return s.powerRequest(ctx, params, PowerOff)
}

func (s *Service) reboot(ctx context.Context, params json.RawMessage) (any, error) {
	return s.powerRequest(ctx, params, Reboot)
}

func (s *Service) powerRequest(ctx context.Context, params json.RawMessage, kind PowerKind) (any, error) {
	var p protocol.PowerParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	timeout := defaultPowerTimeout
	if p.TimeoutSeconds != nil {
		timeout = *p.TimeoutSeconds
		if timeout < 0 || timeout > maxPowerTimeout {
			return nil, invalidParams(`"timeout_seconds" must be between 0 and %d, got %d`, maxPowerTimeout, timeout)
		}
	}
	grace := time.Duration(timeout) * time.Second
	if p.Force && p.TimeoutSeconds == nil {
		grace = 0 // force at once, as protocol 1.0 does
	}
	action := s.power
	log := s.log
	server.AfterResponse(ctx, func() {
		go func() {
			log.Info("power action starting", "action", kind.String(), "force", p.Force, "timeout_seconds", timeout)
			if err := action.Power(kind, p.Force, grace); err != nil {
				log.Error("power action failed", "action", kind.String(), "err", err)
			}
		}()
	})
	msg := fmt.Sprintf("system %s initiated through the init system (never forced: send \"force\": true to allow that)", kind)
	switch {
	case p.Force && grace == 0:
		msg = fmt.Sprintf("forced system %s initiated", kind)
	case p.Force:
		msg = fmt.Sprintf("system %s initiated through the init system; forced after %ds if still running", kind, timeout)
	}
	return protocol.PowerResult{Initiated: true, Message: msg}, nil
}
