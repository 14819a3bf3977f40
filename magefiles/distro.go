//go:build mage

package main

import (
	"context"
	"os"
	"os/exec"
)

// Distro boots real Debian 12 guests (systemd+udev, OpenRC) built with mmdebstrap, installs the agent from
// the ISO as an admin would, and checks activation, reboot, upgrade, uninstall, shutdown and a VM without
// the port (needs root, mmdebstrap, e2fsprogs, qemu-system-x86, qemu-utils; images are cached).
func Distro(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", "vmtest", "-run", "TestDistro", "-v", "-count=1", "-timeout", "40m", "./build/distro")
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	return cmd.Run()
}
