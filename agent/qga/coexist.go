//go:build !windows

package qga

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// QemuGARunning returns why the agent should leave org.qemu.guest_agent.0
// alone: "qemu-ga is running (pid N)" when a process named qemu-ga exists
// under procRoot ("/proc"), else "". (A qemu-ga that holds the port also
// makes the open fail with EBUSY; this check also covers one that is
// starting or restarting.)
func QemuGARunning(procRoot string) string {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return ""
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
		if err != nil {
			continue
		}
		if string(bytes.TrimSpace(comm)) == "qemu-ga" {
			return "qemu-ga is running (pid " + e.Name() + ")"
		}
	}
	return ""
}
