package methods

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo with the fields the guest
// operations need (disk_linux.go's mountEntry keeps fewer).
type mount struct {
	id         int
	major      uint32
	minor      uint32
	mountPoint string
	readOnly   bool // the mount's own "ro" option
	fsType     string
	source     string
}

// parseMounts parses proc(5)'s mountinfo into mounts.
func parseMounts(data []byte) ([]mount, error) {
	var out []mount
	err := eachMountinfoLine(data, func(line []byte, f [][]byte, sep int) error {
		id, err := strconv.Atoi(string(f[0]))
		if err != nil {
			return fmt.Errorf("malformed mount id in %q", line)
		}
		maj, min, ok := strings.Cut(string(f[2]), ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("malformed major:minor in %q", line)
		}
		ro := false
		for opts := f[5]; len(opts) > 0 && !ro; {
			var o []byte
			o, opts, _ = bytes.Cut(opts, []byte(","))
			ro = string(o) == "ro"
		}
		out = append(out, mount{
			id:         id,
			major:      uint32(ma),
			minor:      uint32(mi),
			mountPoint: unescapeOctal(f[4]),
			readOnly:   ro,
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

// readMounts reads and parses the host's /proc/self/mountinfo.
func (s *Service) readMounts() ([]mount, error) {
	p := s.hostPath("/proc/self/mountinfo")
	bp := mountinfoBufs.Get().(*[]byte)
	defer mountinfoBufs.Put(bp)
	data, err := readFileInto(p, (*bp)[:0])
	*bp = data[:0]
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	m, err := parseMounts(data) // copies what it keeps out of data
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	return m, nil
}

// notFreezable are file system types never frozen or trimmed: no block
// device of their own (major 0, except btrfs), network or FUSE file
// systems whose server would be frozen under them, and read-only media.
var notFreezable = map[string]bool{
	"tmpfs": true, "devtmpfs": true, "ramfs": true, "rootfs": true, "overlay": true,
	"squashfs": true, "iso9660": true, "udf": true, "erofs": true, "cramfs": true,
	"nfs": true, "nfs4": true, "cifs": true, "smb3": true, "smbfs": true, "ceph": true,
	"9p": true, "virtiofs": true, "glusterfs": true, "afs": true, "lustre": true,
	"gfs2": true, "ocfs2": true, "fuse": true, "fuseblk": true, "zfs": true,
}

// blockMounts returns the visible mounts of block-device backed file
// systems (major number non-zero, or btrfs, whose major is 0), one per
// super block (bind mounts and second mounts of one device dropped, the
// shortest mount point kept), in mount order: the file systems of qemu-ga's
// guest-get-fsinfo. With freezable, only those worth freezing or trimming:
// writable, and not network, FUSE or read-only media types.
func blockMounts(all []mount, freezable bool) []mount {
	visible := map[string]int{}
	for i, m := range all {
		visible[m.mountPoint] = i
	}
	byDev := map[[2]uint32]int{}
	var out []mount
	for i, m := range all {
		if visible[m.mountPoint] != i || pseudoFS[m.fsType] || (m.major == 0 && m.fsType != "btrfs") {
			continue
		}
		if freezable && (m.readOnly || notFreezable[m.fsType] || strings.HasPrefix(m.fsType, "fuse.")) {
			continue
		}
		key := [2]uint32{m.major, m.minor}
		if j, ok := byDev[key]; ok {
			if len(m.mountPoint) < len(out[j].mountPoint) {
				out[j] = m
			}
			continue
		}
		byDev[key] = len(out)
		out = append(out, m)
	}
	return out
}

// depth counts the components of a clean absolute path ("/" is 0).
func depth(p string) int {
	p = filepath.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// freezeOrder sorts mounts deepest first (a file system is frozen before
// the one it is mounted on), later mounts first among equals.
func freezeOrder(ms []mount) {
	sort.SliceStable(ms, func(i, j int) bool {
		di, dj := depth(ms[i].mountPoint), depth(ms[j].mountPoint)
		if di != dj {
			return di > dj
		}
		return ms[i].id > ms[j].id
	})
}
