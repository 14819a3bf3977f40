package methods

import "golang.org/x/sys/unix"

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
