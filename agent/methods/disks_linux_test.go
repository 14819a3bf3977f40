package methods

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// sysTree builds a fake host root: "path": "content" makes a file,
// "path": "-> target" a symlink, "path/": "" a directory.
func sysTree(t *testing.T, entries map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, v := range entries {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(p, "/"):
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(v, "-> "):
			if err := os.Symlink(strings.TrimPrefix(v, "-> "), full); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

const (
	pciRoot   = "sys/devices/pci0000:00"
	vdaDir    = pciRoot + "/0000:00:02.0/0000:01:00.0/virtio1/block/vda"
	sdaDir    = pciRoot + "/0000:00:05.0/virtio2/host0/target0:0:3/0:0:3:7/block/sda"
	sdbDir    = pciRoot + "/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sdb"
	sdcDir    = pciRoot + "/0000:00:01.1/ata2/host1/target1:0:1/1:0:1:0/block/sdc"
	nvmeDir   = pciRoot + "/0000:00:06.0/nvme/nvme0/nvme0n1"
	usbDir    = pciRoot + "/0000:00:07.0/usb2/2-1/2-1:1.0/host5/target5:0:0/5:0:0:0/block/sdd"
	dmDir     = "sys/devices/virtual/block/dm-0"
	loop0Dir  = "sys/devices/virtual/block/loop0"
	loop1Dir  = "sys/devices/virtual/block/loop1"
	mmioDir   = "sys/devices/platform/a003e00.virtio_mmio/virtio0/block/vde"
	driverDir = "sys/bus/pci/drivers/"
)

func fakeMachine(t *testing.T) string {
	drv := func(dev, name string) (string, string) {
		return dev + "/driver", "-> /" + driverDir + name
	}
	e := map[string]string{
		driverDir + "pcieport/": "", driverDir + "virtio-pci/": "", driverDir + "ahci/": "",
		driverDir + "ata_piix/": "", driverDir + "nvme/": "", driverDir + "xhci_hcd/": "",
		vdaDir + "/size": "2097152\n", vdaDir + "/serial": "VDA-SERIAL\n",
		vdaDir + "/vda1/partition": "1\n", vdaDir + "/vda1/size": "2048\n",
		vdaDir + "/vda2/partition": "2\n", vdaDir + "/vda2/size": "4096\n",
		vdaDir + "/vda2/holders/dm-0": "-> /" + dmDir,
		sdaDir + "/size":              "100\n", sdaDir + "/device/vpd_pg80": "\x00\x80\x00\x0aSCSI-SER-1",
		sdbDir + "/size": "100\n", sdbDir + "/device/serial": "SATA-SER\n",
		pciRoot + "/0000:00:1f.2/ata1/": "", pciRoot + "/0000:00:1f.2/ata2/": "",
		sdcDir + "/size": "100\n", pciRoot + "/0000:00:01.1/ata1/": "",
		nvmeDir + "/size": "100\n", pciRoot + "/0000:00:06.0/nvme/nvme0/serial": "NVME-SER\n",
		nvmeDir + "/device": "-> ..",
		usbDir + "/size":    "100\n", usbDir + "/dev": "8:48\n",
		// No serial in sysfs: udev's ID_SERIAL (as qemu-ga reports it).
		"run/udev/data/b8:48": "S:disk/by-id/usb-QEMU_QEMU_HARDDISK_1-0000:00:07.0-1-0:0\nE:ID_SERIAL=QEMU_QEMU_HARDDISK_1-0000:00:07.0-1\nE:ID_BUS=usb\n",
		dmDir + "/size":       "4096\n", dmDir + "/dm/name": "vg-root\n", dmDir + "/slaves/vda2": "-> /" + vdaDir + "/vda2",
		loop0Dir + "/size": "0\n",
		loop1Dir + "/size": "100\n",
		mmioDir + "/size":  "100\n",
		"sys/block/vda":    "-> /" + vdaDir, "sys/block/sda": "-> /" + sdaDir, "sys/block/sdb": "-> /" + sdbDir,
		"sys/block/sdc": "-> /" + sdcDir, "sys/block/nvme0n1": "-> /" + nvmeDir, "sys/block/sdd": "-> /" + usbDir,
		"sys/block/dm-0": "-> /" + dmDir, "sys/block/loop0": "-> /" + loop0Dir, "sys/block/loop1": "-> /" + loop1Dir,
		"sys/block/vde":       "-> /" + mmioDir,
		"sys/dev/block/254:0": "-> /" + vdaDir, "sys/dev/block/254:1": "-> /" + vdaDir + "/vda1",
		"sys/dev/block/254:2": "-> /" + vdaDir + "/vda2", "sys/dev/block/253:0": "-> /" + dmDir,
		"sys/dev/block/8:0": "-> /" + sdaDir, "sys/dev/block/8:16": "-> /" + sdbDir,
		"sys/dev/block/259:0": "-> /" + nvmeDir, "sys/dev/block/7:1": "-> /" + loop1Dir,
		"proc/self/mountinfo": "22 1 253:0 / / rw - ext4 /dev/mapper/vg-root rw\n" +
			"23 22 254:1 / /boot rw - ext4 /dev/vda1 rw\n" +
			"24 22 8:0 / /srv rw - xfs /dev/sda rw\n" +
			"25 22 259:0 / /nvme ro - ext4 /dev/nvme0n1 ro\n" +
			"26 22 7:1 / /loop rw - ext4 /dev/loop1 rw\n" +
			"27 22 0:30 / /tmp rw - tmpfs tmpfs rw\n",
	}
	for dev, name := range map[string]string{
		pciRoot + "/0000:00:02.0": "pcieport", pciRoot + "/0000:00:02.0/0000:01:00.0": "virtio-pci",
		pciRoot + "/0000:00:05.0": "virtio-pci", pciRoot + "/0000:00:1f.2": "ahci", pciRoot + "/0000:00:01.1": "ata_piix",
		pciRoot + "/0000:00:06.0": "nvme", pciRoot + "/0000:00:07.0": "xhci_hcd",
	} {
		k, v := drv(dev, name)
		e[k] = v
	}
	root := sysTree(t, e)
	// Symlinks are absolute in the table; sysfs's are relative, and they
	// must resolve inside the fake root: rewrite them relative.
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return err
		}
		target, _ := os.Readlink(p)
		if !strings.HasPrefix(target, "/") {
			return nil
		}
		rel, _ := filepath.Rel(filepath.Dir(p), filepath.Join(root, target))
		_ = os.Remove(p)
		return os.Symlink(rel, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestDisks(t *testing.T) {
	s := New(seedConfig(t), Options{HostRoot: fakeMachine(t), Power: &fakePower{t: t}})
	got, err := s.Disks()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `[{"name":"/dev/dm-0","partition":false,"dependencies":["/dev/vda2"],"alias":"vg-root"},` +
		`{"name":"/dev/loop1","partition":false,"dependencies":[]},` +
		`{"name":"/dev/nvme0n1","partition":false,"dependencies":[],"address":{"pci_controller":{"domain":0,"bus":0,"slot":6,"function":0},"bus_type":"nvme","bus":0,"target":0,"unit":0,"serial":"NVME-SER","dev":"/dev/nvme0n1"}},` +
		`{"name":"/dev/sda","partition":false,"dependencies":[],"address":{"pci_controller":{"domain":0,"bus":0,"slot":5,"function":0},"bus_type":"scsi","bus":0,"target":0,"unit":7,"serial":"SCSI-SER-1","dev":"/dev/sda"}},` +
		`{"name":"/dev/sdb","partition":false,"dependencies":[],"address":{"pci_controller":{"domain":0,"bus":0,"slot":31,"function":2},"bus_type":"sata","bus":0,"target":0,"unit":2,"serial":"SATA-SER","dev":"/dev/sdb"}},` +
		`{"name":"/dev/sdc","partition":false,"dependencies":[],"address":{"pci_controller":{"domain":0,"bus":0,"slot":1,"function":1},"bus_type":"ide","bus":1,"target":0,"unit":1,"dev":"/dev/sdc"}},` +
		`{"name":"/dev/sdd","partition":false,"dependencies":[],"address":{"pci_controller":{"domain":0,"bus":0,"slot":7,"function":0},"bus_type":"usb","bus":0,"target":0,"unit":0,"serial":"QEMU_QEMU_HARDDISK_1-0000:00:07.0-1","dev":"/dev/sdd"}},` +
		`{"name":"/dev/vda","partition":false,"dependencies":[],"address":{"pci_controller":{"domain":0,"bus":1,"slot":0,"function":0},"bus_type":"virtio","bus":0,"target":0,"unit":0,"serial":"VDA-SERIAL","dev":"/dev/vda"}},` +
		`{"name":"/dev/vda1","partition":true,"dependencies":["/dev/vda"]},` +
		`{"name":"/dev/vda2","partition":true,"dependencies":["/dev/vda"]},` +
		`{"name":"/dev/vde","partition":false,"dependencies":[],"address":{"pci_controller":{"domain":-1,"bus":-1,"slot":-1,"function":-1},"bus_type":"virtio","bus":0,"target":0,"unit":0,"dev":"/dev/vde"}}]`
	if string(b) != want {
		t.Errorf("Disks() =\n%s\nwant\n%s", strings.ReplaceAll(string(b), "},{", "},\n{"), strings.ReplaceAll(want, "},{", "},\n{"))
	}
}

func TestFSInfo(t *testing.T) {
	s := New(seedConfig(t), Options{HostRoot: fakeMachine(t), Power: &fakePower{t: t}})
	s.statfs = func(path string, st *unix.Statfs_t) error {
		if path == "/srv" {
			return unix.EIO
		}
		*st = unix.Statfs_t{Frsize: 4096, Bsize: 4096, Blocks: 1000, Bfree: 400, Bavail: 300}
		return nil
	}
	got, err := s.FSInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	vda := func(dev string) string {
		return `{"pci_controller":{"domain":0,"bus":1,"slot":0,"function":0},"bus_type":"virtio","bus":0,"target":0,"unit":0,"serial":"VDA-SERIAL","dev":"` + dev + `"}`
	}
	want := `[{"name":"dm-0","mountpoint":"/","type":"ext4","used_bytes":2457600,"total_bytes":3686400,"disks":[` + vda("/dev/vda2") + `]},` +
		`{"name":"vda1","mountpoint":"/boot","type":"ext4","used_bytes":2457600,"total_bytes":3686400,"disks":[` + vda("/dev/vda1") + `]},` +
		`{"name":"sda","mountpoint":"/srv","type":"xfs","disks":[{"pci_controller":{"domain":0,"bus":0,"slot":5,"function":0},"bus_type":"scsi","bus":0,"target":0,"unit":7,"serial":"SCSI-SER-1","dev":"/dev/sda"}]},` +
		`{"name":"nvme0n1","mountpoint":"/nvme","type":"ext4","used_bytes":2457600,"total_bytes":3686400,"disks":[{"pci_controller":{"domain":0,"bus":0,"slot":6,"function":0},"bus_type":"nvme","bus":0,"target":0,"unit":0,"serial":"NVME-SER","dev":"/dev/nvme0n1"}]},` +
		`{"name":"loop1","mountpoint":"/loop","type":"ext4","used_bytes":2457600,"total_bytes":3686400,"disks":[]}]`
	if string(b) != want {
		t.Errorf("FSInfo() =\n%s\nwant\n%s", strings.ReplaceAll(string(b), "]},{", "]},\n{"), strings.ReplaceAll(want, "]},{", "]},\n{"))
	}
}

// TestDisksRealMachine checks this machine's own disks: every disk of
// /sys/block with a size is listed, and a PCI virtio disk gets the address
// sysfs shows.
func TestDisksRealMachine(t *testing.T) {
	s := newService(t, nil)
	disks, err := s.Disks()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		if d.Partition {
			continue
		}
		name := strings.TrimPrefix(d.Name, "/dev/")
		real, err := filepath.EvalSymlinks("/sys/block/" + name)
		if err != nil {
			t.Errorf("%s listed but not in /sys/block: %v", d.Name, err)
			continue
		}
		if strings.Contains(real, "/devices/pci") && d.Address == nil {
			t.Errorf("%s on PCI (%s) without an address", d.Name, real)
		}
		if d.Address != nil && d.Address.BusType == "virtio" && strings.Contains(real, "/devices/pci") {
			pci := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(real))))
			want, _ := parsePCIName(pci)
			if d.Address.PCIController != want {
				t.Errorf("%s: pci_controller %+v, want %+v (%s)", d.Name, d.Address.PCIController, want, real)
			}
		}
	}
	fsi, err := s.FSInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fsi {
		if f.Mountpoint == "/" && (f.TotalBytes == nil || *f.TotalBytes == 0) {
			t.Errorf("root file system without sizes: %+v", f)
		}
	}
}

// TestFSInfoSerialAfterHotplug checks that a disk replaced under the same
// name (hot-unplugged, another plugged in: a new sysfs node) is reported
// with the new disk's serial, not a remembered one.
func TestFSInfoSerialAfterHotplug(t *testing.T) {
	root := fakeMachine(t)
	s := New(seedConfig(t), Options{HostRoot: root, Power: &fakePower{t: t}})
	s.statfs = func(string, *unix.Statfs_t) error { return unix.EIO }
	serialOf := func(mountPoint string) string {
		t.Helper()
		got, err := s.FSInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range got {
			if f.Mountpoint == mountPoint {
				if len(f.Disks) != 1 {
					t.Fatalf("%s: disks %+v, want one", mountPoint, f.Disks)
				}
				return f.Disks[0].Serial
			}
		}
		t.Fatalf("%s not listed in %+v", mountPoint, got)
		return ""
	}
	for range 2 {
		if got := serialOf("/boot"); got != "VDA-SERIAL" {
			t.Fatalf("serial before the hot-plug = %q, want VDA-SERIAL", got)
		}
	}
	// The old node is kept (renamed) so that the new one cannot get its inode.
	dir := filepath.Join(root, vdaDir)
	if err := os.Rename(dir, dir+".unplugged"); err != nil {
		t.Fatal(err)
	}
	for p, v := range map[string]string{"size": "100\n", "serial": "NEW-DISK\n", "vda1/partition": "1\n"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := serialOf("/boot"); got != "NEW-DISK" {
		t.Errorf("serial after the hot-plug = %q, want NEW-DISK", got)
	}
}
