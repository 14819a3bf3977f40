package methods

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/policy"
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

// initCommandTimeout bounds each init-system command (systemctl poweroff
// returns once the job is queued).
const initCommandTimeout = 30 * time.Second

// systemPower is the real PowerAction.
type systemPower struct {
	log *slog.Logger
	// resolve finds a command in the fixed system PATH.
	resolve func(name string) (string, error)
	// run runs a resolved command and reports whether it succeeded.
	run func(path string, args ...string) error
	// after waits out the grace period.
	after func(time.Duration) <-chan time.Time
	// sync flushes file systems; reboot is reboot(2) with a LINUX_REBOOT_CMD.
	sync   func()
	reboot func(kind PowerKind) error
}

func newSystemPower(log *slog.Logger) *systemPower {
	cmds := policy.NewCommands(false, nil, nil)
	return &systemPower{
		log:     log,
		resolve: cmds.Resolve,
		run:     runInitCommand,
		after:   time.After,
		sync:    syncFilesystems,
		reboot:  rebootSyscall,
	}
}

// initCommands are tried in order until one succeeds: systemd, then
// sysvinit/OpenRC's shutdown, then busybox (which signals its init).
func initCommands(kind PowerKind) [][]string {
	if kind == Reboot {
		return [][]string{{"systemctl", "reboot"}, {"shutdown", "-r", "now"}, {"reboot"}}
	}
	return [][]string{{"systemctl", "poweroff"}, {"shutdown", "-h", "now"}, {"poweroff"}}
}

func (p *systemPower) Power(kind PowerKind, force bool, grace time.Duration) error {
	if !force {
		if !p.askInit(kind) {
			return fmt.Errorf("%s: no init system command succeeded; not forcing it (the host did not ask for force)", kind)
		}
		if grace > 0 {
			<-p.after(grace)
			p.log.Error("system still running after the grace period; not forcing it (the host did not ask for force)", "action", kind.String(), "grace", grace)
		}
		return nil
	}
	if grace > 0 {
		if p.askInit(kind) {
			<-p.after(grace)
			p.log.Warn("system still running after the grace period; forcing, as the host asked", "action", kind.String(), "grace", grace)
		} else {
			p.log.Warn("no init system command succeeded; forcing, as the host asked", "action", kind.String())
		}
	}
	p.sync()
	if err := p.reboot(kind); err != nil {
		return fmt.Errorf("reboot(2) %s: %w", kind, err)
	}
	return nil
}

func (p *systemPower) askInit(kind PowerKind) bool {
	for _, c := range initCommands(kind) {
		path, err := p.resolve(c[0])
		if err != nil {
			p.log.Debug("init command unavailable", "command", c[0], "err", err)
			continue
		}
		if err := p.run(path, c[1:]...); err != nil {
			p.log.Info("init command failed", "command", path, "args", c[1:], "err", err)
			continue
		}
		p.log.Info("init system asked", "action", kind.String(), "command", path, "args", c[1:])
		return true
	}
	return false
}

func runInitCommand(path string, args ...string) error {
	s := &Service{cfg: &config.Config{MaxOutputBytes: 4096}, log: slog.New(slog.DiscardHandler)}
	res, err := s.run(context.Background(), path, protocol.ExecParams{Command: path, Args: args}, initCommandTimeout, true)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if r := res.(protocol.ExecResult); r.ExitCode != 0 {
		return fmt.Errorf("%s: exit status %d: %s%s", path, r.ExitCode, r.Stdout, r.Stderr)
	}
	return nil
}
