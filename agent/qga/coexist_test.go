//go:build !windows

package qga

import (
	"strings"
	"testing"
)

func TestQemuGARunning(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"1/comm": "systemd\n", "42/comm": "kvmmanager-agen\n", "self/comm": "qemu-ga\n"})
	if r := QemuGARunning(root); r != "" {
		t.Errorf("no qemu-ga: %q", r)
	}
	writeFiles(t, root, map[string]string{"77/comm": "qemu-ga\n"})
	if r := QemuGARunning(root); !strings.Contains(r, "pid 77") {
		t.Errorf("qemu-ga at 77: %q", r)
	}
	if r := QemuGARunning(root + "/missing"); r != "" {
		t.Errorf("no /proc: %q", r)
	}
}
