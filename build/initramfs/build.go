package initramfs

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

//go:embed guest
var guestFiles embed.FS

// GuestModules are the modules the test guest loads: the virtio PCI
// transport, the virtio-serial console driver (the agent's port), the
// virtio-scsi CD-ROM with its file system, the virtio-blk disk and the
// virtio RNG. ResolveModules adds what they depend on.
var GuestModules = []string{"virtio_pci", "virtio_console", "virtio_scsi", "sr_mod", "isofs", "virtio_blk", "virtio_rng"}

// NoLinkFlag on the kernel command line makes the guest skip creating the
// /dev/virtio-ports/<name> links, so that the agent must find its port
// through sysfs.
const NoLinkFlag = "kvmtest.nolink"

// Options describe the initramfs of one guest.
type Options struct {
	Arch     string  // "amd64" or "arm64": names the agent's directory on the CD
	Kernel   *Kernel // the kernel whose modules are included
	Busybox  string  // a static busybox for Arch
	Modules  []string
	Hostname string // default "kvmtest-<Arch>"
	// Config, when set, is written to /etc/kvmtest/config.json, which the
	// agent uses instead of the CD-ROM's config.json in boots whose kernel
	// command line has TestConfigFlag.
	Config []byte
}

// TestConfigFlag on the kernel command line makes the guest start the agent
// with Options.Config and mount the ext4 disk /dev/vda (if any) on
// /mnt/data (a file system the agent can freeze).
const TestConfigFlag = "kvmtest.testconfig"

// Hostname returns the hostname the guest of arch gets by default.
func Hostname(arch string) string { return "kvmtest-" + arch }

// Build writes to out an uncompressed newc initramfs whose init is busybox
// init: it mounts /proc, /sys, /dev and /tmp, loads the modules, sets the
// hostname, brings up lo, mounts the CD-ROM on /media/cdrom, links the
// virtio-serial ports (unless NoLinkFlag), and starts
// /media/cdrom/linux-<arch>/kvmmanager-agent --config /media/cdrom/config.json.
func Build(out string, opts Options) error {
	if opts.Kernel == nil || opts.Busybox == "" || opts.Arch == "" {
		return fmt.Errorf("initramfs %s: Arch, Kernel and Busybox are required", out)
	}
	if opts.Modules == nil {
		opts.Modules = GuestModules
	}
	if opts.Hostname == "" {
		opts.Hostname = Hostname(opts.Arch)
	}
	mods, err := ResolveModules(opts.Kernel.Modules, opts.Modules)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	bb, err := os.ReadFile(opts.Busybox)
	if err != nil {
		return fmt.Errorf("initramfs %s: read busybox: %w", out, err)
	}

	var a Archive
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "media/cdrom", "root"} {
		add(a.Dir(d, 0o755))
	}
	add(a.CharDevice("dev/console", 0o600, 5, 1))
	add(a.CharDevice("dev/null", 0o666, 1, 3))
	add(a.File("bin/busybox", 0o755, bb))
	add(a.Symlink("bin/sh", "busybox"))
	add(a.Symlink("init", "bin/busybox"))
	for _, name := range []string{"inittab", "rcS", "agent", "rcK", "chpasswd"} {
		b, err := guestFiles.ReadFile("guest/" + name)
		if err != nil {
			return fmt.Errorf("initramfs %s: %w", out, err)
		}
		switch name {
		case "inittab":
			add(a.File("etc/inittab", 0o644, b))
		case "chpasswd":
			add(a.File("usr/sbin/chpasswd", 0o755, b))
		default:
			add(a.File("etc/kvmtest/"+name, 0o755, b))
		}
	}
	add(a.File("etc/kvmtest/arch", 0o644, []byte(opts.Arch+"\n")))
	add(a.File("etc/hostname", 0o644, []byte(opts.Hostname+"\n")))
	add(a.File("etc/os-release", 0o644, []byte(OSRelease)))
	add(a.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")))
	add(a.File("etc/group", 0o644, []byte("root:x:0:\n")))
	add(a.File("etc/shadow", 0o600, []byte("root:*:19000:0:99999:7:::\n")))
	if opts.Config != nil {
		add(a.File("etc/kvmtest/config.json", 0o644, opts.Config))
	}
	var list strings.Builder
	for _, m := range mods {
		data, err := ModuleData(m.Path)
		if err != nil {
			return fmt.Errorf("initramfs %s: %w", out, err)
		}
		add(a.File("lib/modules/"+m.Name+".ko", 0o644, data))
		list.WriteString(m.Name + "\n")
	}
	add(a.File("etc/kvmtest/modules", 0o644, []byte(list.String())))
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("initramfs %s: %w", out, err)
		}
	}

	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("initramfs %s: %w", out, err)
	}
	return nil
}

// OSRelease is the guest's /etc/os-release.
const OSRelease = `NAME="kvmmanager test initramfs"
ID=kvmtest
VERSION_ID=1
PRETTY_NAME="kvmmanager test initramfs 1"
`
