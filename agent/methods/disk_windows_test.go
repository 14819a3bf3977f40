package methods

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func TestDiskUsageFromVolumes(t *testing.T) {
	old := listMounts
	defer func() { listMounts = old }()
	listMounts = func() ([]volumeMount, error) {
		return []volumeMount{
			{device: `\\?\Volume{1111}\`, root: `C:\`},
			{device: `\\?\Volume{2222}\`, root: `C:\mnt\data\`},
			{device: `\\?\Volume{3333}\`, root: `D:\`}, // empty DVD drive
			{device: `\\?\Volume{4444}\`, root: `E:\`}, // no blocks
		}, nil
	}
	s := newService(t, nil)
	s.statfs = func(root string) (diskSpace, error) {
		switch root {
		case `C:\`:
			return diskSpace{FSType: "NTFS", Total: 100 << 30, Free: 40 << 30, Available: 30 << 30}, nil
		case `C:\mnt\data\`:
			return diskSpace{FSType: "ReFS", Total: 10 << 30, Free: 10 << 30, Available: 10 << 30}, nil
		case `D:\`:
			return diskSpace{}, errors.New("The device is not ready.")
		}
		return diskSpace{FSType: "FAT32"}, nil
	}
	res, err := s.diskUsage(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.DiskUsage{Filesystems: []protocol.Filesystem{
		{MountPoint: `C:\`, Device: `\\?\Volume{1111}\`, FSType: "NTFS", TotalBytes: 100 << 30, UsedBytes: 60 << 30, AvailableBytes: 30 << 30, UsedPercent: 67},
		{MountPoint: `C:\mnt\data\`, Device: `\\?\Volume{2222}\`, FSType: "ReFS", TotalBytes: 10 << 30, UsedBytes: 0, AvailableBytes: 10 << 30, UsedPercent: 0},
	}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("get_disk_usage =\n%+v\nwant\n%+v", res, want)
	}
}

func TestSplitMultiSZ(t *testing.T) {
	u := func(s string) []uint16 {
		var out []uint16
		for _, r := range s {
			out = append(out, uint16(r))
		}
		return out
	}
	tests := []struct {
		in   []uint16
		want []string
	}{
		{u("C:\\\x00D:\\\x00\x00"), []string{`C:\`, `D:\`}},
		{u("\x00"), nil},
		{nil, nil},
		{u("C:\\"), []string{`C:\`}}, // not terminated
	}
	for _, tt := range tests {
		if got := splitMultiSZ(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitMultiSZ(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestDiskUsageRealWindows asks the running Windows: C:\ must be there.
func TestDiskUsageRealWindows(t *testing.T) {
	s := newService(t, nil)
	res, err := s.diskUsage(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var c *protocol.Filesystem
	for i, fs := range res.(protocol.DiskUsage).Filesystems {
		if strings.EqualFold(fs.MountPoint, `C:\`) {
			c = &res.(protocol.DiskUsage).Filesystems[i]
		}
	}
	if c == nil || c.TotalBytes == 0 || c.FSType == "" || c.UsedBytes > c.TotalBytes {
		t.Errorf("get_disk_usage = %+v, want C:\\ with real figures", res)
	}
	t.Logf("get_disk_usage: %+v", res)
}
