// Package distro builds the test images of the distribution end-to-end tests
// (`go tool mage distro`) and holds those tests: real Debian 11, 12 and 13
// userlands made with mmdebstrap, booting systemd with udev or OpenRC on
// sysvinit, plus a Debian 12 userland with rpm that says it is Rocky Linux 9
// (a Debian guest acting as an rpm system), turned into ext4 disk images with
// mkfs.ext4 -d (no root mounts), booted under QEMU with the Debian cloud
// kernel of each suite and the initrd that the image's own initramfs-tools
// generated.
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
	// AptPreferences, when set, is written to
	// /etc/apt/preferences.d/kvmtest before mmdebstrap installs packages
	// (and stays in the image).
	AptPreferences string `json:",omitempty"`
	// SizeMiB is the size of the (sparse) ext4 disk image.
	SizeMiB int
	// Files are extra files baked into the image after the test's own
	// (the rpm guest's os-release, other harnesses' guest helpers); each
	// replaces whatever the packages put there (a symlink such as
	// /etc/os-release is replaced, not followed). Part of the cache key.
	Files []File `json:",omitempty"`
	// RPMProvides, when set, are capabilities (such as /bin/sh) the image's
	// rpm database records as provided by an empty package, as the base
	// packages of a real rpm system do; needs rpm on the host. Part of the
	// cache key.
	RPMProvides []string `json:",omitempty"`
}

// File is an extra file of a Spec.
type File struct {
	Path string      // relative to the image's root
	Mode fs.FileMode // permission bits
	Data string
}

// systemdPackages are the packages of a systemd image on top of minbase.
var systemdPackages = []string{
	"systemd-sysv", "udev", "linux-image-cloud-amd64", "kmod", "procps",
	"iproute2", "mount", "bash",
}

// debianSystemd is Debian release suite booting systemd, with udev; the
// administrator runs `bash /media/cdrom/install-debian.sh`.
func debianSystemd(name, suite string) Spec {
	return Spec{
		Name:     name,
		Suite:    suite,
		Init:     InitSystemd,
		Packages: systemdPackages,
		Install:  "bash /media/cdrom/install-debian.sh",
		SizeMiB:  1536,
	}
}

// The Debian systemd images: 11 (systemd 247, split /usr), 12 (systemd 252)
// and 13 (systemd 257).
var (
	Debian11Systemd = debian11Systemd()
	Debian12Systemd = debianSystemd("debian12-systemd", "bookworm")
	Debian13Systemd = debianSystemd("debian13-systemd", "trixie")
)

// debian11Systemd takes the kernel from the bullseye suite (11.11) rather
// than bullseye-security: the archive's bullseye-security index names a
// linux-image-cloud-amd64 (5.10.262-1) whose file is missing (404), which
// fails the whole build.
func debian11Systemd() Spec {
	s := debianSystemd("debian11-systemd", "bullseye")
	s.AptPreferences = "Package: linux-image-*\nPin: release n=bullseye-security\nPin-Priority: -1\n"
	return s
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

// rockyOSRelease is Rocky Linux 9.4's /etc/os-release, with a comment saying
// what the system really is.
const rockyOSRelease = `# build/distro: a Debian 12 userland with rpm acting as an rpm system;
# the installers and the agent see Rocky Linux 9.
NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
ANSI_COLOR="0;32"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:rocky:rocky:9::baseos"
HOME_URL="https://rockylinux.org/"
BUG_REPORT_URL="https://bugs.rockylinux.org/"
SUPPORT_END="2032-05-31"
ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"
ROCKY_SUPPORT_PRODUCT_VERSION="9.4"
REDHAT_SUPPORT_PRODUCT="Rocky Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
`

// Rocky9RPM is a Debian guest acting as an rpm system: Debian 12 (systemd
// 252, as Rocky 9) booting systemd with udev, with Debian's rpm installed,
// its database at /var/lib/rpm as on Rocky (Debian's rpm defaults to
// ~/.rpmdb), and an /etc/os-release that says Rocky Linux 9, so that
// `sh /media/cdrom/install.sh` (the administrator's command) picks
// install-rhel.sh and `rpm -Uvh` runs the package's scriptlets under a real
// systemd and udev. It is not Rocky: no dnf, no SELinux, Debian's paths.
var Rocky9RPM = Spec{
	Name:     "rocky9-rpm",
	Suite:    "bookworm",
	Init:     InitSystemd,
	Packages: append(append([]string(nil), systemdPackages...), "rpm"),
	Install:  "sh /media/cdrom/install.sh",
	Files: []File{
		{"etc/os-release", 0o644, rockyOSRelease},
		{"usr/lib/os-release", 0o644, rockyOSRelease},
		{"etc/rocky-release", 0o644, "Rocky Linux release 9.4 (Blue Onyx)\n"},
		{"etc/redhat-release", 0o644, "Rocky Linux release 9.4 (Blue Onyx)\n"},
		{"etc/system-release", 0o644, "Rocky Linux release 9.4 (Blue Onyx)\n"},
		{"etc/rpm/macros.kvmtest-dbpath", 0o644, "# build/distro: the rpm database where Rocky keeps it.\n%_dbpath /var/lib/rpm\n"},
	},
	// The agent's rpm requires /bin/sh for its scriptlets, which Rocky's bash
	// provides; here dash is the shell and rpm does not know it.
	RPMProvides: []string{"/bin/sh"},
	SizeMiB:     1536,
}

// Specs are every test image, in the order the tests start building them.
var Specs = []Spec{Debian12Systemd, Debian11Systemd, Debian13Systemd, Rocky9RPM, Debian12OpenRC}

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
