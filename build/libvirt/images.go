package libvirt

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"

	"github.com/kvmmanager/guest-agent/build/distro"
)

//go:embed guest
var guestFiles embed.FS

// Guest kinds: which agent answers org.qemu.guest_agent.0.
const (
	KindOurs      = "ours"    // kvmmanager-agent, installed from the ISO
	KindReference = "qemu-ga" // Debian's qemu-guest-agent package
)

// extraPackages go on top of build/distro's Debian 12 systemd image: the
// reference agent, hwclock (qemu-ga's guest-set-time runs it), the time zone
// database (the test sets a zone with an offset).
var extraPackages = []string{"qemu-guest-agent", "util-linux-extra", "tzdata"}

// Spec is the image of both guests: build/distro's Debian 12 with systemd
// plus Debian's qemu-guest-agent and the test's shell. Its first-boot
// install (guest/kvmtest-install.sh) depends on KernelArg: "ours" replaces
// qemu-guest-agent with kvmmanager-agent from the ISO, "qemu-ga" keeps it.
func Spec() (distro.Spec, error) {
	files, err := shellFiles()
	if err != nil {
		return distro.Spec{}, err
	}
	s := distro.Debian12Systemd
	s.Name = "libvirt"
	s.Packages = append(slices.Clone(s.Packages), extraPackages...)
	s.Files = files
	s.Install = "bash /usr/local/sbin/kvmtest-install"
	return s, nil
}

// KernelArg is the kernel command line word that makes a guest of kind.
func KernelArg(kind string) (string, error) {
	if kind != KindOurs && kind != KindReference {
		return "", fmt.Errorf("unknown guest kind %q (want %s or %s)", kind, KindOurs, KindReference)
	}
	return "kvmtest.agent=" + kind, nil
}

// shellFiles are the test shell's files in the image.
func shellFiles() ([]distro.File, error) {
	var files []distro.File
	for _, f := range []struct {
		src, dst string
		mode     uint32
	}{
		{"guest/kvmtest-shell.sh", "usr/local/sbin/kvmtest-shell", 0o755},
		{"guest/kvmtest-install.sh", "usr/local/sbin/kvmtest-install", 0o755},
		{"guest/kvmtest-shell.service", "etc/systemd/system/kvmtest-shell.service", 0o644},
		{"guest/kvmtest-admin-shell.conf", "etc/systemd/system/kvmtest-admin.service.d/kvmtest-shell.conf", 0o644},
	} {
		b, err := guestFiles.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("read embedded %s: %w", f.src, err)
		}
		files = append(files, distro.File{Path: f.dst, Mode: fs.FileMode(f.mode), Data: string(b)})
	}
	return files, nil
}
