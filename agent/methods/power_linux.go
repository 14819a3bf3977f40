package methods

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func syncFilesystems() { unix.Sync() }

// rebootSyscall powers off or restarts at once with reboot(2); on success it
// does not return.
func rebootSyscall(kind PowerKind) error {
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if kind == Reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	return unix.Reboot(cmd)
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
