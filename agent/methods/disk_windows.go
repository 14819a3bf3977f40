package methods

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/windows"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// defaultStatfsTimeout bounds the query of one volume (a hung network or removable
// drive must not hold the request).
const defaultStatfsTimeout = 5 * time.Second

// diskSpace is what GetVolumeInformation and GetDiskFreeSpaceEx say about
// one mounted volume.
type diskSpace struct {
	FSType                 string
	Total, Free, Available uint64 // Available: free to the caller (quotas)
}

// statfsFunc queries the volume mounted at root (a path ending in \).
type statfsFunc func(root string) (diskSpace, error)

func defaultStatfs(root string) (diskSpace, error) {
	r16, err := windows.UTF16PtrFromString(root)
	if err != nil {
		return diskSpace{}, err
	}
	var fsName [windows.MAX_PATH + 1]uint16
	if err := windows.GetVolumeInformation(r16, nil, 0, nil, nil, nil, &fsName[0], uint32(len(fsName))); err != nil {
		return diskSpace{}, fmt.Errorf("GetVolumeInformation %s: %w", root, err)
	}
	var d diskSpace
	d.FSType = windows.UTF16ToString(fsName[:])
	if err := windows.GetDiskFreeSpaceEx(r16, &d.Available, &d.Total, &d.Free); err != nil {
		return diskSpace{}, fmt.Errorf("GetDiskFreeSpaceEx %s: %w", root, err)
	}
	return d, nil
}

// volumeMount is one place a volume is mounted: a drive letter (C:\) or a
// folder of another volume (C:\mnt\data\).
type volumeMount struct {
	device string // \\?\Volume{GUID}\ or, without volume enumeration, the DOS device
	root   string
}

// listMounts is mountedVolumes; tests replace it.
var listMounts = mountedVolumes

// get_disk_usage: every mounted volume (drive letters and mount folders)
// with its file system and figures; volumes without media (an empty DVD
// drive) or that do not answer in time are left out.
func (s *Service) diskUsage(ctx context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	mounts, err := listMounts()
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "list volumes: %v", err)
	}
	out := protocol.DiskUsage{Filesystems: []protocol.Filesystem{}}
	for _, m := range mounts {
		d, err := s.statfsBounded(ctx, m.root)
		if err != nil {
			s.log.Debug("volume query failed; mount left out", "mount_point", m.root, "err", err)
			continue
		}
		if d.Total == 0 {
			continue
		}
		used := d.Total - d.Free
		out.Filesystems = append(out.Filesystems, protocol.Filesystem{
			MountPoint:     m.root,
			Device:         m.device,
			FSType:         d.FSType,
			TotalBytes:     d.Total,
			UsedBytes:      used,
			AvailableBytes: d.Available,
			UsedPercent:    usedPercent(used, d.Available),
		})
	}
	if err := ctx.Err(); err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "get_disk_usage: %v", err)
	}
	return out, nil
}

// statfsBounded runs s.statfs for at most statfsTimeout; the call itself
// cannot be cancelled and finishes in the background.
func (s *Service) statfsBounded(ctx context.Context, root string) (diskSpace, error) {
	type result struct {
		d   diskSpace
		err error
	}
	ch := make(chan result, 1)
	statfs := s.statfs
	go func() {
		d, err := statfs(root)
		ch <- result{d, err}
	}()
	t := time.NewTimer(s.statfsTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.d, r.err
	case <-t.C:
		return diskSpace{}, fmt.Errorf("%s: no answer within %v", root, s.statfsTimeout)
	case <-ctx.Done():
		return diskSpace{}, ctx.Err()
	}
}

// mountedVolumes enumerates the volumes (FindFirstVolume/FindNextVolume) and
// where each is mounted (GetVolumePathNamesForVolumeName). Where volume
// enumeration is not available it falls back to the drive letters
// (GetLogicalDriveStrings).
func mountedVolumes() ([]volumeMount, error) {
	var name [windows.MAX_PATH + 1]uint16
	h, err := windows.FindFirstVolume(&name[0], uint32(len(name)))
	if err != nil {
		return driveLetters()
	}
	defer windows.FindVolumeClose(h)
	var out []volumeMount
	for {
		vol := windows.UTF16ToString(name[:])
		for _, root := range volumePaths(vol) {
			out = append(out, volumeMount{device: vol, root: root})
		}
		if err := windows.FindNextVolume(h, &name[0], uint32(len(name))); err != nil {
			if errors.Is(err, windows.ERROR_NO_MORE_FILES) {
				break
			}
			return nil, fmt.Errorf("FindNextVolume: %w", err)
		}
	}
	if len(out) == 0 {
		return driveLetters()
	}
	return out, nil
}

// volumePaths returns the drive letters and folders vol is mounted on.
func volumePaths(vol string) []string {
	v16, err := windows.UTF16PtrFromString(vol)
	if err != nil {
		return nil
	}
	buf := make([]uint16, 1024)
	var n uint32
	err = windows.GetVolumePathNamesForVolumeName(v16, &buf[0], uint32(len(buf)), &n)
	if errors.Is(err, windows.ERROR_MORE_DATA) {
		buf = make([]uint16, n)
		err = windows.GetVolumePathNamesForVolumeName(v16, &buf[0], uint32(len(buf)), &n)
	}
	if err != nil {
		return nil
	}
	return splitMultiSZ(buf)
}

// driveLetters lists the drive roots (A:\ ... Z:\) with their DOS devices.
func driveLetters() ([]volumeMount, error) {
	buf := make([]uint16, 256)
	n, err := windows.GetLogicalDriveStrings(uint32(len(buf)), &buf[0])
	if err != nil {
		return nil, fmt.Errorf("GetLogicalDriveStrings: %w", err)
	}
	var out []volumeMount
	for _, root := range splitMultiSZ(buf[:n]) {
		dev := root
		d16, _ := windows.UTF16PtrFromString(strings.TrimSuffix(root, `\`))
		var target [windows.MAX_PATH + 1]uint16
		if _, err := windows.QueryDosDevice(d16, &target[0], uint32(len(target))); err == nil {
			dev = windows.UTF16ToString(target[:])
		}
		out = append(out, volumeMount{device: dev, root: root})
	}
	return out, nil
}

// splitMultiSZ splits a list of NUL-terminated strings ended by an empty one.
func splitMultiSZ(buf []uint16) []string {
	var out []string
	for len(buf) > 0 && buf[0] != 0 {
		i := 0
		for i < len(buf) && buf[i] != 0 {
			i++
		}
		out = append(out, windows.UTF16ToString(buf[:i]))
		if i == len(buf) {
			break
		}
		buf = buf[i+1:]
	}
	return out
}
