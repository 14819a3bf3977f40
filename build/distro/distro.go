// Package distro builds the Debian 12 test images of the distribution
// end-to-end tests (`go tool mage distro`) and holds those tests: real Debian
// userlands made with mmdebstrap, one booting systemd with udev and one
// booting OpenRC on sysvinit, turned into ext4 disk images with mkfs.ext4 -d
// (no root mounts), booted under QEMU with the Debian cloud kernel and the
// initrd that the image's own initramfs-tools generated.
//
// Each image carries a small "administrator" (guest/kvmtest-admin.sh) that,
// at the first boot, mounts the installer ISO from the CD-ROM and runs the
// install command an admin would type. The tests then drive the installed
// agent from the host through the project's client package.
//
// Images are cached under CacheDir, keyed by a hash of everything that goes
// into them (suite, package list, baked files), so a repeated run does not
// rebuild them; every VM boots from a qcow2 overlay, so the cached image stays
// pristine while reboots within one scenario keep their state.
package distro

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// guestFiles are the files baked into every test image.
//
//go:embed guest
var guestFiles embed.FS

// CacheEnv overrides the image cache directory.
const CacheEnv = "KVMMANAGER_DISTRO_CACHE"

// Init systems of the test images.
const (
	InitSystemd = "systemd"
	InitOpenRC  = "openrc"
)

// Spec describes one test image.
type Spec struct {
	// Name names the image in the cache and its hostname ("kvmtest-" + Name).
	Name string
	// Suite is the Debian release given to mmdebstrap.
	Suite string
	// Init is InitSystemd or InitOpenRC: how the administrator runs at boot.
	Init string
	// Packages are installed on top of mmdebstrap's minbase variant. They
	// must include a kernel (linux-image-*), whose vmlinuz and initrd are
	// taken from the image's /boot.
	Packages []string
	// Install is the command the administrator runs from /root at the first
	// boot, with the installer ISO mounted on /media/cdrom.
	Install string
	// SizeMiB is the size of the (sparse) ext4 disk image.
	SizeMiB int
	// Files are extra files baked into the image after the test's own (other
	// harnesses' guest helpers). Part of the cache key; empty for the specs
	// above, whose keys therefore do not change.
	Files []File `json:",omitempty"`
}

// File is an extra file of a Spec.
type File struct {
	Path string      // relative to the image's root
	Mode fs.FileMode // permission bits
	Data string
}

// Debian12Systemd is Debian 12 booting systemd, with udev; the administrator
// runs `bash /media/cdrom/install-debian.sh`.
var Debian12Systemd = Spec{
	Name:  "debian12-systemd",
	Suite: "bookworm",
	Init:  InitSystemd,
	Packages: []string{
		"systemd-sysv", "udev", "linux-image-cloud-amd64", "kmod", "procps",
		"iproute2", "mount", "bash",
	},
	Install: "bash /media/cdrom/install-debian.sh",
	SizeMiB: 1536,
}

// Debian12OpenRC is Debian 12 booting OpenRC on sysvinit, with udev (as
// Debian sets it up); the administrator runs `sh /media/cdrom/install.sh`,
// which must take its generic (copy the files) path.
var Debian12OpenRC = Spec{
	Name:  "debian12-openrc",
	Suite: "bookworm",
	Init:  InitOpenRC,
	Packages: []string{
		"openrc", "sysvinit-core", "udev", "linux-image-cloud-amd64", "kmod",
		"procps", "iproute2", "mount", "bash",
	},
	Install: "sh /media/cdrom/install.sh",
	SizeMiB: 1536,
}

// CacheDir returns the image cache: $KVMMANAGER_DISTRO_CACHE, else
// kvmmanager-agent/distro under the user's cache directory
// ($XDG_CACHE_HOME or ~/.cache).
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return filepath.Abs(d)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("image cache directory (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(base, "kvmmanager-agent", "distro"), nil
}

// KernelAppend is the kernel command line of the test VMs, plus extra words.
func KernelAppend(extra ...string) string {
	s := "root=/dev/vda rw console=ttyS0 net.ifnames=0"
	for _, e := range extra {
		s += " " + e
	}
	return s
}
