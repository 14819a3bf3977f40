package methods

import (
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func TestParseMountinfo(t *testing.T) {
	in := "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		"37 35 0:5 / /proc rw - proc proc rw\n" +
		"38 35 8:1 / /a\\134b\\011c rw shared:2 master:3 - vfat /dev/sda\\0401 rw\n"
	got, err := parseMountinfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{
		{"98:0", "/mnt/my disk", "ext3", "/dev/root"},
		{"0:5", "/proc", "proc", "proc"},
		{"8:1", "/a\\b\tc", "vfat", "/dev/sda 1"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if _, err := parseMountinfo([]byte("1 2 3\n")); err == nil {
		t.Fatal("malformed line accepted")
	}
}

func TestSelectMounts(t *testing.T) {
	in := []mountEntry{
		{"254:0", "/", "ext4", "/dev/vda"},
		{"0:21", "/proc", "proc", "proc"},
		{"0:22", "/sys", "sysfs", "sysfs"},
		{"0:38", "/sys/fs/cgroup/unified", "cgroup2", "cgroup2"},
		{"0:23", "/dev/shm", "tmpfs", "tmpfs"},
		{"0:27", "/dev/shm", "tmpfs", "tmpfs"},             // over-mounts the previous one
		{"254:0", "/srv/bind/of/root", "ext4", "/dev/vda"}, // bind mount: duplicate device
		{"8:16", "/data/long/path", "xfs", "/dev/sdb"},
		{"8:16", "/data", "xfs", "/dev/sdb"}, // same device, shorter path wins
		{"11:0", "/media/cdrom", "iso9660", "/dev/sr0"},
		{"0:40", "/var/lib/docker/overlay2/x/merged", "overlay", "overlay"},
	}
	got := selectMounts(in)
	var points []string
	for _, m := range got {
		points = append(points, m.mountPoint)
	}
	want := []string{"/", "/dev/shm", "/data", "/media/cdrom", "/var/lib/docker/overlay2/x/merged"}
	if !slices.Equal(points, want) {
		t.Fatalf("mount points %q, want %q", points, want)
	}
	if got[1].devID != "0:27" {
		t.Fatalf("/dev/shm from %s, want the visible (last) mount 0:27", got[1].devID)
	}
}

func TestDiskUsageFromMountinfo(t *testing.T) {
	mountinfo := "1 0 254:1 / / rw - ext4 /dev/vda1 rw\n" +
		"2 1 0:5 / /proc rw - proc proc rw\n" +
		"3 1 11:0 / /media/cdrom ro - iso9660 /dev/sr0 ro\n" +
		"4 1 0:30 / /empty rw - rootfs rootfs rw\n" +
		"5 1 8:1 / /gone rw - ext4 /dev/sda1 rw\n"
	stats := map[string]unix.Statfs_t{
		"/":            {Bsize: 4096, Frsize: 4096, Blocks: 1000, Bfree: 300, Bavail: 250},
		"/media/cdrom": {Bsize: 2048, Frsize: 2048, Blocks: 500, Bfree: 0, Bavail: 0},
		"/empty":       {Bsize: 4096, Frsize: 4096},
	}
	s := New(seedConfig(t), Options{HostRoot: fakeHost(t, map[string]string{"proc/self/mountinfo": mountinfo}), Power: &fakePower{t: t}})
	s.statfs = func(path string, st *unix.Statfs_t) error {
		v, ok := stats[path]
		if !ok {
			return errors.New("permission denied")
		}
		*st = v
		return nil
	}
	var r protocol.DiskUsage
	mustCall(t, s.Handlers()[protocol.MethodGetDiskUsage], nil, &r)
	want := []protocol.Filesystem{
		{MountPoint: "/", Device: "/dev/vda1", FSType: "ext4", TotalBytes: 4096000, UsedBytes: 700 * 4096, AvailableBytes: 250 * 4096, UsedPercent: 74},
		{MountPoint: "/media/cdrom", Device: "/dev/sr0", FSType: "iso9660", TotalBytes: 1024000, UsedBytes: 1024000, AvailableBytes: 0, UsedPercent: 100},
	}
	if !slices.Equal(r.Filesystems, want) {
		t.Fatalf("filesystems\n%+v\nwant\n%+v", r.Filesystems, want)
	}
}

// The real machine: the same file systems and sizes as df.
func TestDiskUsageRealMachine(t *testing.T) {
	s := newService(t, nil)
	var r protocol.DiskUsage
	mustCall(t, s.Handlers()[protocol.MethodGetDiskUsage], nil, &r)
	if len(r.Filesystems) == 0 {
		t.Fatal("no file systems")
	}
	out, err := exec.Command("df", "-B1", "--output=target,size").Output()
	if err != nil {
		t.Skipf("df: %v", err)
	}
	dfSize := map[string]uint64{}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.ParseUint(f[1], 10, 64)
		dfSize[f[0]] = n
	}
	for _, fs := range r.Filesystems {
		if pseudoFS[fs.FSType] {
			t.Errorf("pseudo file system reported: %+v", fs)
		}
		size, ok := dfSize[fs.MountPoint]
		if !ok {
			t.Errorf("%s (%s) reported but df does not show it", fs.MountPoint, fs.FSType)
			continue
		}
		if size != fs.TotalBytes {
			t.Errorf("%s: total_bytes %d, df %d", fs.MountPoint, fs.TotalBytes, size)
		}
		if fs.UsedBytes > fs.TotalBytes || fs.UsedPercent < 0 || fs.UsedPercent > 100 {
			t.Errorf("%s: implausible figures %+v", fs.MountPoint, fs)
		}
	}
	for mp := range dfSize {
		if !slices.ContainsFunc(r.Filesystems, func(f protocol.Filesystem) bool { return f.MountPoint == mp }) {
			t.Errorf("df shows %s, the agent does not", mp)
		}
	}
}
