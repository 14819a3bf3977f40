package vm

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill QEMU when the process that
// started it dies, so that a crashed or killed test leaves no VM behind.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
