package methods

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// errHelperTimeout is the error of a helper program that outran its bound.
var errHelperTimeout = errors.New("timed out")

// runHelper runs a helper program of the guest operations (an fsfreeze
// hook, chpasswd: programs root installed) to its end, contained as
// exec_command's commands are (startContained): on timeout or cancellation
// it and everything it started are killed, and whatever it left running is
// killed when it exits. cmd's output must go to writers the caller reads
// afterwards; WaitDelay keeps a leftover holder of the pipes from stalling
// the wait (that alone is no failure).
func (s *Service) runHelper(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) error {
	cmd.WaitDelay = time.Second
	box, err := startContained(cmd, s.log)
	if err != nil {
		return err
	}
	defer box.release()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-waited:
	case <-timer.C:
		box.kill(false)
		<-waited
		err = fmt.Errorf("%w: no exit within %v", errHelperTimeout, timeout)
	case <-ctx.Done():
		box.kill(false)
		<-waited
		err = ctx.Err()
	}
	box.kill(true)
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	return err
}
