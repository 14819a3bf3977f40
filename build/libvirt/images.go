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

// extraPackages go into both images: hwclock (guest-set-time runs it in
// qemu-ga), the time zone database (the test sets a zone with an offset).
var extraPackages = []string{"util-linux-extra", "tzdata"}

// Spec returns the image of a guest kind: Debian 12 with systemd, like
// build/distro's, plus the test shell; the reference also has Debian's
// qemu-guest-agent and installs nothing from the ISO.
func Spec(kind string) (distro.Spec, error) {
	files, err := shellFiles()
	if err != nil {
		return distro.Spec{}, err
	}
	s := distro.Debian12Systemd
	s.Packages = append(slices.Clone(s.Packages), extraPackages...)
	s.Files = files
	switch kind {
	case KindOurs:
		s.Name = "libvirt-ours"
	case KindReference:
		s.Name = "libvirt-qemuga"
		s.Packages = append(s.Packages, "qemu-guest-agent")
		s.Install = "true"
	default:
		return distro.Spec{}, fmt.Errorf("unknown guest kind %q", kind)
	}
	return s, nil
}

// shellFiles are the test shell's files in the image.
func shellFiles() ([]distro.File, error) {
	var files []distro.File
	for _, f := range []struct {
		src, dst string
		mode     uint32
	}{
		{"guest/kvmtest-shell.sh", "usr/local/sbin/kvmtest-shell", 0o755},
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
