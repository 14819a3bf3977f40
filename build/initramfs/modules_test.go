package initramfs

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// hostModules returns the modules directory of the host's Debian cloud
// kernel, the one module tree present without downloading.
func hostModules(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/lib/modules/*-cloud-amd64")
	if len(dirs) == 0 {
		testenv.Unavailable(t, "no /lib/modules/*-cloud-amd64 (apt-get install linux-image-cloud-amd64)")
	}
	return dirs[len(dirs)-1]
}

func TestResolveModulesOrdersDependenciesFirst(t *testing.T) {
	dir := hostModules(t)
	mods, err := ResolveModules(dir, GuestModules)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		if _, dup := pos[m.Name]; dup {
			t.Errorf("%s listed twice", m.Name)
		}
		pos[m.Name] = i
	}
	// Each pair: the first must be loaded before the second (Debian 12
	// cloud kernels build all of these as modules).
	before := [][2]string{
		{"virtio_ring", "virtio"}, {"virtio", "virtio_pci"}, {"virtio", "virtio_console"},
		{"scsi_mod", "virtio_scsi"}, {"scsi_mod", "sr_mod"}, {"cdrom", "sr_mod"}, {"cdrom", "isofs"},
	}
	for _, b := range before {
		i, ok1 := pos[b[0]]
		j, ok2 := pos[b[1]]
		if !ok1 || !ok2 || i > j {
			t.Errorf("want %s before %s in %v", b[0], b[1], names(mods))
		}
	}
	for _, m := range mods {
		if !strings.HasPrefix(m.Path, dir) {
			t.Errorf("%s from %s, outside %s", m.Name, m.Path, dir)
		}
	}
}

func TestResolveModulesSkipsBuiltinAndRejectsUnknown(t *testing.T) {
	dir := hostModules(t)
	// ext4 is built into Debian's cloud kernels (modules.builtin).
	mods, err := ResolveModules(dir, []string{"ext4"})
	if err != nil || len(mods) != 0 {
		t.Errorf("ResolveModules(ext4) = %v, %v; want nothing to load", names(mods), err)
	}
	if _, err := ResolveModules(dir, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("unknown module: err = %v", err)
	}
}

func names(mods []Module) []string {
	var s []string
	for _, m := range mods {
		s = append(s, m.Name)
	}
	return s
}

func TestFetchNamesAptSetupForUnknownArchitecture(t *testing.T) {
	testenv.NeedCommands(t, "dpkg")
	_, err := FetchKernel(context.Background(), t.TempDir(), "nosucharch")
	if !errors.Is(err, ErrNoPackage) || !strings.Contains(err.Error(), AptSetup("nosucharch")) {
		t.Errorf("FetchKernel(nosucharch) = %v, want ErrNoPackage naming %q", err, AptSetup("nosucharch"))
	}
	_, err = FetchBusybox(context.Background(), t.TempDir(), "nosucharch")
	if !errors.Is(err, ErrNoPackage) {
		t.Errorf("FetchBusybox(nosucharch) = %v, want ErrNoPackage", err)
	}
	// dpkg's own architecture passes the check: apt is asked.
	native, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkArch(context.Background(), strings.TrimSpace(string(native))); err != nil {
		t.Errorf("checkArch(%s), dpkg's architecture: %v", native, err)
	}
}
