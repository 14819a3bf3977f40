//go:build !linux

package vm

import "os/exec"

// setParentDeathSignal is a no-op where the kernel offers no parent-death
// signal; the watchdog still bounds QEMU's life.
func setParentDeathSignal(*exec.Cmd) {}
