package methods

import (
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// sysInfoCache keeps get_system_info cheap without making it stale:
//
//   - os-release is parsed once and reused while a stat(2) of the file in
//     use (and of /etc/os-release, which takes precedence when it appears)
//     shows the same device, inode, size, mtime and ctime: any edit, rename
//     over it or package upgrade changes one of them;
//   - the online CPU list (/sys/devices/system/cpu/online, which changes
//     with CPU hotplug, not only at boot) is read each time, with one
//     pread(2) on a descriptor kept open instead of open, read and close.
//
// The zero value is ready; it is safe for concurrent use.
type sysInfoCache struct {
	mu sync.Mutex

	osKey          [2]fileKey // stat of /etc/os-release and /usr/lib/os-release when parsed
	osName, osVer  string
	osValid        bool
	fieldsKey      [2]fileKey
	fields         map[string]string // guest-get-osinfo's, shared read-only
	fieldsValid    bool
	cpuFile        *os.File
	cpuFileOpenErr error
}

// fileKey identifies a file's content as far as stat(2) can tell.
type fileKey struct {
	exists       bool
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func statKey(path string) fileKey {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileKey{}
	}
	return fileKey{exists: true, dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// osRelease returns s.osRelease(), parsing the file again only when its
// stat changed.
func (c *sysInfoCache) osRelease(s *Service) (name, ver string) {
	key := osKeyNow(s)
	c.mu.Lock()
	if c.osValid && c.osKey == key {
		name, ver = c.osName, c.osVer
		c.mu.Unlock()
		return name, ver
	}
	c.mu.Unlock()
	name, ver = s.osRelease()
	c.mu.Lock()
	// Stored under the key taken before reading: a change during the read
	// changes the key again, so the next call reads the file anew.
	c.osKey, c.osName, c.osVer, c.osValid = key, name, ver, true
	c.mu.Unlock()
	return name, ver
}

// osKeyNow stats the os-release files the way the readers choose them.
func osKeyNow(s *Service) [2]fileKey {
	key := [2]fileKey{statKey(s.hostPath("/etc/os-release"))}
	if !key[0].exists {
		key[1] = statKey(s.hostPath("/usr/lib/os-release"))
	}
	return key
}

// osFields returns s.readOSReleaseFields(), parsing the file again only
// when its stat changed.
func (c *sysInfoCache) osFields(s *Service) map[string]string {
	key := osKeyNow(s)
	c.mu.Lock()
	if c.fieldsValid && c.fieldsKey == key {
		m := c.fields
		c.mu.Unlock()
		return m
	}
	c.mu.Unlock()
	m := s.readOSReleaseFields()
	c.mu.Lock()
	c.fieldsKey, c.fields, c.fieldsValid = key, m, true
	c.mu.Unlock()
	return m
}

// onlineCPUs counts the online CPUs, reading the list with one pread on a
// descriptor kept open (sysfs regenerates an attribute on each read at
// offset 0). A fake host root (tests) goes through s.onlineCPUs.
func (c *sysInfoCache) onlineCPUs(s *Service) (int, error) {
	if s.hostRoot != "/" {
		return s.onlineCPUs()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cpuFile == nil && c.cpuFileOpenErr == nil {
		c.cpuFile, c.cpuFileOpenErr = os.Open("/sys/devices/system/cpu/online")
	}
	if c.cpuFile == nil {
		return s.onlineCPUs()
	}
	var buf [512]byte
	n, err := c.cpuFile.ReadAt(buf[:], 0)
	if err != nil && n == 0 {
		return s.onlineCPUs()
	}
	if n == len(buf) { // a list this long: read it whole the usual way
		return s.onlineCPUs()
	}
	return countCPUList(strings.TrimSpace(string(buf[:n])))
}
