//go:build mage

package main

import (
	"context"
)

// E2e builds the ISO and boots it in amd64 and arm64 QEMU guests (TCG), driving every agent method through a
// real virtio-serial port (needs qemu-system-x86, qemu-system-arm and the arm64 apt architecture; see README).
func E2e(ctx context.Context) error {
	return goCmd(ctx, "test", "-tags", "vmtest", "-run", "TestVM", "-v", "-count=1", "-timeout", "25m", "./build/e2e")
}
