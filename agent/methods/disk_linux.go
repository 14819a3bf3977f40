package methods

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// pseudoFS are the file system types get_disk_usage leaves out: kernel
// interfaces with no storage behind them. tmpfs, devtmpfs and overlay stay,
// as with df: they hold real data (RAM or the container's root) and their
// figures are real.
var pseudoFS = map[string]bool{
	"autofs": true, "binfmt_misc": true, "bpf": true, "cgroup": true, "cgroup2": true,
	"configfs": true, "debugfs": true, "devpts": true, "efivarfs": true, "fusectl": true,
	"fuse.lxcfs": true, "fuse.gvfsd-fuse": true, "fuse.portal": true, "hugetlbfs": true,
	"mqueue": true, "nfsd": true, "nsfs": true, "proc": true, "pstore": true, "ramfs": true,
	"rpc_pipefs": true, "securityfs": true, "selinuxfs": true, "sysfs": true, "tracefs": true,
	"xenfs": true, "openpromfs": true, "devfs": true,
}

// userFS reports file systems served by a user-space daemon that any user
// may mount (fuse, fuse.*: sshfs, gvfs, rclone...): their statfs waits on a
// program a guest user may control, so get_disk_usage leaves them out.
// fuseblk (ntfs-3g and other block-device FUSE mounts, which need root) stays.
func userFS(fsType string) bool {
	return fsType == "fuse" || strings.HasPrefix(fsType, "fuse.")
}

// defaultStatfsTimeout bounds statfs on one mount point: a dead network file system
// must not wedge the request (the stuck call is abandoned, not waited for).
const defaultStatfsTimeout = 5 * time.Second

type statfsFunc func(path string, st *unix.Statfs_t) error

func defaultStatfs(path string, st *unix.Statfs_t) error { return unix.Statfs(path, st) }

// mountinfoBufs hold the bytes of /proc/self/mountinfo between calls, so
// that reading it allocates nothing once the buffer has grown to its size.
var mountinfoBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// readFileInto is readSmallFile reading into buf (grown as needed), which
// the caller keeps for the next call.
func readFileInto(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return buf, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return buf, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	devID      string // major:minor
	mountPoint string
	fsType     string
	source     string
}

// get_disk_usage: the real file systems of /proc/self/mountinfo with statfs
// figures as df computes them.
func (s *Service) diskUsage(ctx context.Context, params json.RawMessage) (any, error) {
	if err := noParams(params); err != nil {
		return nil, err
	}
	p := s.hostPath("/proc/self/mountinfo")
	bp := mountinfoBufs.Get().(*[]byte)
	defer mountinfoBufs.Put(bp)
	data, err := readFileInto(p, (*bp)[:0])
	*bp = data[:0]
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "read %s: %v", p, err)
	}
	mounts, err := parseMountinfo(data)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "parse %s: %v", p, err)
	}
	out := protocol.DiskUsage{Filesystems: []protocol.Filesystem{}}
	for _, m := range selectMounts(mounts) {
		var st unix.Statfs_t
		if err := s.statfsBounded(ctx, m.mountPoint, &st); err != nil {
			s.log.Debug("statfs failed; mount left out", "mount_point", m.mountPoint, "err", err)
			continue
		}
		fs := usage(m, &st)
		if fs.TotalBytes == 0 {
			continue // as df: no blocks, nothing to report (e.g. an empty rootfs)
		}
		out.Filesystems = append(out.Filesystems, fs)
	}
	if err := ctx.Err(); err != nil {
		return nil, protocol.Errorf(protocol.CodeInternalError, "get_disk_usage: %v", err)
	}
	return out, nil
}

// statfsBounded is statfs of path that gives up after s.statfsTimeout. The
// call it gives up on cannot be interrupted (a hung NFS server, a FUSE daemon
// that never answers): it is left running, and until it returns, later
// requests skip that mount point instead of starting another call, so a hung
// mount holds at most one thread however often get_disk_usage is asked.
func (s *Service) statfsBounded(ctx context.Context, path string, st *unix.Statfs_t) error {
	type res struct {
		st  unix.Statfs_t
		err error
	}
	if _, busy := s.statfsBusy.LoadOrStore(path, true); busy {
		return fmt.Errorf("statfs %s: an earlier call is still waiting for the file system", path)
	}
	ch := make(chan res, 1)
	go func() {
		var r res
		r.err = s.statfs(path, &r.st)
		s.statfsBusy.Delete(path)
		ch <- r
	}()
	t := time.NewTimer(s.statfsTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		*st = r.st
		if r.err != nil {
			return fmt.Errorf("statfs %s: %w", path, r.err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("statfs %s: no answer within %v", path, s.statfsTimeout)
	case <-ctx.Done():
		return fmt.Errorf("statfs %s: %w", path, ctx.Err())
	}
}

// usage computes df's figures: with f_frsize blocks, used = blocks - bfree,
// available = bavail (what unprivileged users may still use), and the
// percentage is used / (used + available), rounded up.
func usage(m mountEntry, st *unix.Statfs_t) protocol.Filesystem {
	bsize := uint64(st.Frsize)
	if bsize == 0 {
		bsize = uint64(st.Bsize)
	}
	blocks, bfree, bavail := st.Blocks, st.Bfree, st.Bavail
	if bfree > blocks {
		bfree = blocks
	}
	fs := protocol.Filesystem{
		MountPoint:     m.mountPoint,
		Device:         m.source,
		FSType:         m.fsType,
		TotalBytes:     blocks * bsize,
		UsedBytes:      (blocks - bfree) * bsize,
		AvailableBytes: bavail * bsize,
	}
	fs.UsedPercent = usedPercent(blocks-bfree, bavail)
	return fs
}

// parseMountinfo parses proc(5)'s mountinfo into the fields get_disk_usage
// needs; only the four fields kept become strings.
func parseMountinfo(data []byte) ([]mountEntry, error) {
	out := make([]mountEntry, 0, bytes.Count(data, []byte{'\n'})+1)
	err := eachMountinfoLine(data, func(_ []byte, f [][]byte, sep int) error {
		out = append(out, mountEntry{
			devID:      string(f[2]),
			mountPoint: unescapeOctal(f[4]),
			fsType:     unescapeOctal(f[sep+1]),
			source:     unescapeOctal(f[sep+2]),
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachMountinfoLine splits proc(5)'s mountinfo lines,
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
// in place and calls fn with each line's fields and the index of the "-"
// separator (f[sep+1] is the file system type, f[sep+2] the source). The
// fields alias data and are only valid during the call.
func eachMountinfoLine(data []byte, fn func(line []byte, f [][]byte, sep int) error) error {
	var fields [32][]byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		f := splitFields(line, fields[:0])
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if len(f[i]) == 1 && f[i][0] == '-' {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+2 >= len(f) {
			return fmt.Errorf("malformed line %q", line)
		}
		if err := fn(line, f, sep); err != nil {
			return err
		}
	}
	return nil
}

// splitFields appends the space- or tab-separated fields of line to f.
func splitFields(line []byte, f [][]byte) [][]byte {
	start := -1
	for i, c := range line {
		if c == ' ' || c == '\t' || c == '\r' {
			if start >= 0 {
				f = append(f, line[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		f = append(f, line[start:])
	}
	return f
}

// unescapeOctal undoes the kernel's \ooo escapes (space \040, tab \011,
// newline \012, backslash \134) and returns the field as a string.
func unescapeOctal(s []byte) string {
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// selectMounts drops pseudo file systems, mounts hidden by a later mount on
// the same mount point, and duplicates of one device (bind mounts, the same
// file system mounted twice): of those, the shortest mount point is kept, the
// first listed on a tie.
func selectMounts(all []mountEntry) []mountEntry {
	visible := map[string]int{} // mount point -> index of the last mount on it
	for i, m := range all {
		visible[m.mountPoint] = i
	}
	byDev := map[string]int{} // devID -> index in out
	var out []mountEntry
	for i, m := range all {
		if pseudoFS[m.fsType] || userFS(m.fsType) || visible[m.mountPoint] != i {
			continue
		}
		if j, ok := byDev[m.devID]; ok {
			if len(m.mountPoint) < len(out[j].mountPoint) {
				out[j] = m
			}
			continue
		}
		byDev[m.devID] = len(out)
		out = append(out, m)
	}
	return out
}
