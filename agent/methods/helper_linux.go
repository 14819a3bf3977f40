package methods

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// errHelperTimeout is the error of a helper program that outran its bound.
var errHelperTimeout = errors.New("timed out")

// runHelper runs a helper program of the guest operations (an fsfreeze
// hook, chpasswd: programs root installed) to its end, in a process group
// of its own that is killed whole on timeout or cancellation. cmd's output
// must go to writers the caller reads afterwards; WaitDelay keeps a
// leftover holder of the pipes from stalling the wait.
func (s *Service) runHelper(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-waited:
	case <-timer.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-waited
		err = fmt.Errorf("%w: no exit within %v", errHelperTimeout, timeout)
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-waited
		err = ctx.Err()
	}
	// What the program left in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return err
}
