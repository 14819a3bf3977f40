//go:build mage

package main

import (
	"context"
	"os"
	"os/exec"
)

// E2e builds the ISO and boots it in amd64 and arm64 QEMU guests (TCG), driving every agent method through a
// real virtio-serial port (needs qemu-system-x86, qemu-system-arm and the arm64 apt architecture; see README).
func E2e(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", "vmtest", "-run", "TestVM", "-v", "-count=1", "-timeout", "25m", "./build/e2e")
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	return cmd.Run()
}
