//go:build mage

package main

import "context"

// Distro boots real Debian 11, 12 and 13 guests (systemd+udev; OpenRC on 12) and a Debian 12 guest acting as
// Rocky Linux 9 (rpm), all built with mmdebstrap, installs the agent from the ISO as an admin would, and checks
// activation, reboot, upgrade, uninstall, shutdown and a VM without the port; it prints the suite × scenario
// table and writes it to dist/distro/matrix.md (needs root, mmdebstrap, e2fsprogs, qemu-system-x86,
// qemu-utils; images are cached).
func Distro(ctx context.Context) error {
	return goCmd(ctx, "test", "-tags", "vmtest", "-run", "TestDistro", "-v", "-count=1", "-timeout", "80m", "./build/distro")
}
