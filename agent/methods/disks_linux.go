package methods

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// pciDiskDrivers are the drivers of the PCI functions that control disks,
// with the bus type of their disks (qemu-ga's list): the PCI address of the
// first such function on the way down from the root bus is the disk's
// "pci-controller", which libvirt matches with the domain's devices.
var pciDiskDrivers = map[string]bool{
	"ata_piix": true, "sym53c8xx": true, "virtio-pci": true, "ahci": true,
	"nvme": true, "xhci_hcd": true, "ehci-pci": true,
}

// sysRel returns the path of a resolved sysfs path relative to the host
// root ("/sys/devices/..."), the form the patterns below are matched on.
func (s *Service) sysRel(p string) string {
	if s.hostRoot == "/" {
		return p
	}
	rel, err := filepath.Rel(s.hostRoot, p)
	if err != nil {
		return p
	}
	return "/" + rel
}

// resolveSys follows the symlink of a sysfs path under the host root and
// returns the real path relative to the host root. The links sysfs makes to
// devices (/sys/block/X, /sys/dev/block/M:m, .../slaves/X) are relative and
// lead into /sys/devices, whose directories are real directories: one
// readlink(2) resolved textually gives the same path as a walk that lstats
// every component. Anything else (an absolute link, one that leads outside
// /sys/devices, not a link at all) is walked.
func (s *Service) resolveSys(p string) (string, error) {
	if target, err := os.Readlink(s.hostPath(p)); err == nil && !path.IsAbs(target) {
		if r := path.Join(path.Dir(p), target); strings.HasPrefix(r, "/sys/devices/") && strings.HasPrefix(p, "/sys/") {
			return r, nil
		}
	}
	r, err := filepath.EvalSymlinks(s.hostPath(p))
	if err != nil {
		return "", err
	}
	return s.sysRel(r), nil
}

func (s *Service) readSysString(p string) string {
	b, err := readSmallFile(s.hostPath(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Disks lists the block devices of /sys/block of non-zero size, each disk
// followed by its partitions, as qemu-ga's guest-get-disks: the device
// node, device-mapper alias, dependencies (slaves; a partition depends on
// its disk) and, for disks on (virtual) hardware, the address.
func (s *Service) Disks() ([]protocol.DiskInfo, error) {
	dir := s.hostPath("/sys/block")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, wrapErr(nil, err, "failed to list %s", dir)
	}
	out := []protocol.DiskInfo{}
	for _, e := range entries {
		name := e.Name()
		blockDir := "/sys/block/" + name
		if s.readSysString(blockDir+"/size") == "0" || s.readSysString(blockDir+"/size") == "" {
			continue
		}
		real, err := s.resolveSys(blockDir)
		if err != nil {
			continue
		}
		d := protocol.DiskInfo{
			Name:         "/dev/" + name,
			Dependencies: s.slaves(real),
			Alias:        s.readSysString(real + "/dm/name"),
		}
		if !strings.Contains(real, "/devices/virtual/") {
			d.Address = s.diskAddress(real, name)
		}
		out = append(out, d)
		parts, _ := os.ReadDir(s.hostPath(real))
		for _, pe := range parts {
			if !pe.IsDir() {
				continue
			}
			if _, err := os.Stat(s.hostPath(real + "/" + pe.Name() + "/partition")); err != nil {
				continue
			}
			out = append(out, protocol.DiskInfo{
				Name:         "/dev/" + pe.Name(),
				Partition:    true,
				Dependencies: []string{"/dev/" + name},
			})
		}
	}
	return out, nil
}

// slaves lists the device nodes under dir/slaves (dm, md, bcache), sorted.
func (s *Service) slaves(dir string) []string {
	out := []string{}
	entries, _ := os.ReadDir(s.hostPath(dir + "/slaves"))
	for _, e := range entries {
		out = append(out, "/dev/"+e.Name())
	}
	return out
}

// FSInfo lists the mounted, block-device backed file systems (qemu-ga's
// guest-get-fsinfo): device name, mount point, type, used and total bytes
// (total = used + available to unprivileged users), and the disks below
// the device, found through device-mapper slaves and partition parents.
func (s *Service) FSInfo(ctx context.Context) ([]protocol.FSInfo, error) {
	all, err := s.readMounts()
	if err != nil {
		return nil, wrapErr(nil, err, "failed to list mounted file systems")
	}
	out := []protocol.FSInfo{}
	for _, m := range blockMounts(all, false) {
		if err := ctx.Err(); err != nil {
			return nil, wrapErr(nil, err, "guest-get-fsinfo interrupted")
		}
		fs := protocol.FSInfo{Mountpoint: m.mountPoint, Type: m.fsType, Disks: []protocol.DiskAddress{}}
		major, minor := m.major, m.minor
		if major == 0 { // btrfs: the device of its source
			var st statT
			if err := s.statDev(m.source, &st); err == nil {
				major, minor = st.major, st.minor
			}
		}
		real, err := s.resolveSys(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
		if err == nil {
			fs.Name = filepath.Base(real)
			fs.Disks = s.diskAddresses(real, 0)
		} else {
			fs.Name = filepath.Base(m.source)
		}
		var st statfsResult
		if err := s.statfsOf(ctx, m.mountPoint, &st); err == nil {
			fs.UsedBytes, fs.TotalBytes = &st.used, &st.total
		}
		out = append(out, fs)
	}
	return out, nil
}

// diskAddresses returns the addresses of the real disks below the block
// device at the resolved sysfs path dev: itself, or for a virtual device
// (dm, md, loop) those of its slaves, recursively.
func (s *Service) diskAddresses(dev string, level int) []protocol.DiskAddress {
	out := []protocol.DiskAddress{}
	if level > 8 {
		return out
	}
	if strings.Contains(dev, "/devices/virtual/block/") {
		entries, _ := os.ReadDir(s.hostPath(dev + "/slaves"))
		for _, e := range entries {
			real, err := s.resolveSys(dev + "/slaves/" + e.Name())
			if err != nil {
				continue
			}
			out = append(out, s.diskAddresses(real, level+1)...)
		}
		return out
	}
	if a := s.diskAddress(dev, filepath.Base(dev)); a != nil {
		out = append(out, *a)
	}
	return out
}

// diskAddress finds the address of the real device at the resolved sysfs
// path dev (a disk or a partition) named name.
func (s *Service) diskAddress(dev, name string) *protocol.DiskAddress {
	a := &protocol.DiskAddress{
		PCIController: protocol.PCIAddress{Domain: -1, Bus: -1, Slot: -1, Function: -1},
		BusType:       protocol.BusUnknown,
		Dev:           "/dev/" + name,
	}
	disk := dev
	if _, err := os.Stat(s.hostPath(dev + "/partition")); err == nil {
		disk = filepath.Dir(dev)
	}
	a.Serial = s.diskSerial(disk)
	switch {
	case strings.Contains(disk, "/devices/pci"):
		s.pciDiskAddress(disk, a)
	case strings.Contains(disk, "/virtio"):
		// virtio-mmio (e.g. arm64 "virt" without PCI): no controller address.
		a.BusType = protocol.BusVirtio
	}
	return a
}

// diskSerial reads the disk's serial as sysfs has it: virtio-blk's
// "serial", SCSI/SATA/NVMe "device/serial", the SCSI unit serial VPD page;
// else udev's ID_SERIAL, which qemu-ga reports (a QEMU CD-ROM has no serial
// in sysfs: udev makes "0QEMU_QEMU_CD-ROM_drive-scsi0-0-0-0" from its
// inquiry data).
func (s *Service) diskSerial(disk string) string {
	if v := s.serials.sysfsSerial(disk, s.hostPath(disk), s.sysfsDiskSerial); v != "" {
		return v
	}
	return s.udevSerial(disk)
}

// sysfsDiskSerial is the serial sysfs has for the disk, or "".
func (s *Service) sysfsDiskSerial(disk string) string {
	for _, p := range []string{"/serial", "/device/serial"} {
		if v := s.readSysString(disk + p); v != "" {
			return v
		}
	}
	if v := s.readSysString(disk + "/device/vpd_pg80"); v != "" {
		// Unit Serial Number VPD page: 4 header bytes, then the serial.
		if len(v) > 4 {
			return strings.TrimSpace(strings.Trim(v[4:], "\x00"))
		}
	}
	return ""
}

// udevSerial returns the ID_SERIAL property udev recorded for the block
// device in its database (/run/udev/data/bMAJOR:MINOR), or "".
func (s *Service) udevSerial(disk string) string {
	dev := s.readSysString(disk + "/dev") // "MAJOR:MINOR"
	if dev == "" || strings.ContainsAny(dev, "/.") {
		return ""
	}
	b, err := readSmallFile(s.hostPath("/run/udev/data/b" + dev))
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "E:ID_SERIAL="); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// pciDiskAddress fills the controller address and bus position of a disk
// below /sys/devices/pciDDDD:BB, as qemu-ga derives them.
func (s *Service) pciDiskAddress(disk string, a *protocol.DiskAddress) {
	i := strings.Index(disk, "/devices/pci")
	rest := disk[i+len("/devices/pci"):]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		return
	}
	base := disk[:len(disk)-len(rest)+j] // .../devices/pciDDDD:BB
	rest = rest[j:]
	driver := ""
	for {
		comp, tail, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
		pci, ok := parsePCIName(comp)
		if !ok {
			return // no known controller on the way: address unknown
		}
		base += "/" + comp
		rest = "/" + tail
		a.PCIController = pci
		link, err := os.Readlink(s.hostPath(base + "/driver"))
		if err == nil && pciDiskDrivers[filepath.Base(link)] {
			driver = filepath.Base(link)
			break
		}
	}
	// SCSI position: ".../targetH:C:T/H:C:T:L/..." gives channel, id, lun.
	var tgt [3]int
	hasTgt := false
	if k := strings.Index(disk, "/target"); k >= 0 {
		seg := strings.Split(disk[k+len("/target"):], "/")
		if len(seg) >= 2 {
			f := strings.Split(seg[1], ":")
			if len(f) == 4 {
				c, e1 := strconv.Atoi(f[1])
				t, e2 := strconv.Atoi(f[2])
				l, e3 := strconv.Atoi(f[3])
				if e1 == nil && e2 == nil && e3 == nil {
					tgt, hasTgt = [3]int{c, t, l}, true
				}
			}
		}
	}
	// The host (SCSI host or ATA port) and its index among its siblings.
	hostIdx := -1
	ata := true
	k := strings.Index(disk, "/ata")
	if k < 0 {
		ata = false
		k = strings.Index(disk, "/host")
	}
	if k >= 0 {
		prefix := "host"
		if ata {
			prefix = "ata"
		}
		comp, _, _ := strings.Cut(disk[k+1:], "/")
		if host, err := strconv.Atoi(strings.TrimPrefix(comp, prefix)); err == nil {
			hostIdx = slices.Index(s.hostNumbers(disk[:k], prefix), host)
		}
	}
	switch driver {
	case "ata_piix":
		if hostIdx >= 0 && hasTgt {
			a.BusType, a.Bus, a.Unit = protocol.BusIDE, hostIdx, tgt[1]
		}
	case "sym53c8xx":
		if hasTgt {
			a.BusType, a.Unit = protocol.BusSCSI, tgt[1]
		}
	case "virtio-pci":
		if hasTgt {
			a.BusType, a.Unit = protocol.BusSCSI, tgt[2]
		} else {
			a.BusType = protocol.BusVirtio
		}
	case "ahci":
		if hostIdx >= 0 && hasTgt {
			a.BusType, a.Unit = protocol.BusSATA, hostIdx
		}
	case "nvme":
		a.BusType = protocol.BusNVMe
	case "xhci_hcd", "ehci-pci":
		a.BusType = protocol.BusUSB
	}
}

// hostNumbers lists the sorted N of the "<prefix>N" entries of dir.
func (s *Service) hostNumbers(dir, prefix string) []int {
	var out []int
	entries, _ := os.ReadDir(s.hostPath(dir))
	for _, e := range entries {
		if v, ok := strings.CutPrefix(e.Name(), prefix); ok {
			if n, err := strconv.Atoi(v); err == nil {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// parsePCIName parses "DDDD:BB:SS.F" (hexadecimal).
func parsePCIName(s string) (protocol.PCIAddress, bool) {
	var a protocol.PCIAddress
	dom, rest, ok1 := strings.Cut(s, ":")
	bus, rest, ok2 := strings.Cut(rest, ":")
	slot, fn, ok3 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !ok3 {
		return a, false
	}
	vals := []*int{&a.Domain, &a.Bus, &a.Slot, &a.Function}
	for i, f := range []string{dom, bus, slot, fn} {
		v, err := strconv.ParseUint(f, 16, 32)
		if err != nil || f == "" {
			return a, false
		}
		*vals[i] = int(v)
	}
	return a, true
}

type statT struct{ major, minor uint32 }

// statDev returns the device number of the block device node p (under the
// host root).
func (s *Service) statDev(p string, st *statT) error {
	var us unix.Stat_t
	if err := unix.Stat(s.hostPath(p), &us); err != nil {
		return err
	}
	if us.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("%s is not a block device", p)
	}
	st.major, st.minor = unix.Major(us.Rdev), unix.Minor(us.Rdev)
	return nil
}

type statfsResult struct{ used, total uint64 }

// statfsOf computes qemu-ga's figures: used = blocks - free, total =
// used + available to unprivileged users, in bytes (f_frsize units).
func (s *Service) statfsOf(ctx context.Context, path string, r *statfsResult) error {
	var st unix.Statfs_t
	if err := s.statfsBounded(ctx, path, &st); err != nil {
		return err
	}
	bsize := uint64(st.Frsize)
	if bsize == 0 {
		bsize = uint64(st.Bsize)
	}
	used := st.Blocks - min(st.Bfree, st.Blocks)
	r.used = used * bsize
	r.total = (used + st.Bavail) * bsize
	return nil
}
