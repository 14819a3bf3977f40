package methods

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the command in a process group of its own and makes
// cancellation (timeout, agent shutdown) kill that whole group with SIGKILL,
// so that children the command started die with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group id is the child's pid (Setpgid with Pgid 0).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
