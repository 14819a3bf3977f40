package methods

import (
	"sync"

	"golang.org/x/sys/unix"
)

// serialCache keeps the serial numbers that sysfs reports for disks, so that
// guest-get-fsinfo and get_disks do not ask the device each time: reading
// virtio-blk's "serial" sends a GET_ID request to the host and waits for it
// (hundreds of microseconds), where everything else the call reads is kernel
// memory.
//
// A disk's serial is part of the device (virtio-blk's config, the SCSI unit
// serial page, the NVMe controller's identify data): it cannot change while
// the device exists. A hot-unplugged disk replaced by another under the same
// name is a new device with a new sysfs directory, and sysfs (kernfs) gives
// every node a new inode number (64-bit, never reused within a boot), so each
// entry is keyed by the disk directory's path and inode, checked with one
// stat(2) per use. udev's ID_SERIAL, the fallback when sysfs has none, is a
// file that udev may rewrite: it is not cached.
//
// The zero value is ready; it is safe for concurrent use.
type serialCache struct {
	mu sync.Mutex
	m  map[string]serialEntry // resolved sysfs path of the disk -> entry
}

type serialEntry struct {
	ino    uint64
	serial string // "" when sysfs has none
}

// maxSerialEntries bounds the cache against a guest that hot-plugs disks
// without end: past it the cache starts over.
const maxSerialEntries = 256

// sysfsSerial returns read(disk) for the disk at the resolved sysfs path
// disk (under the host root at hostDisk), from the cache while the disk's
// directory is the same sysfs node.
func (c *serialCache) sysfsSerial(disk, hostDisk string, read func(string) string) string {
	var st unix.Stat_t
	if err := unix.Stat(hostDisk, &st); err != nil {
		return read(disk)
	}
	c.mu.Lock()
	e, ok := c.m[disk]
	c.mu.Unlock()
	if ok && e.ino == st.Ino {
		return e.serial
	}
	v := read(disk)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxSerialEntries {
		c.m = map[string]serialEntry{}
	}
	c.m[disk] = serialEntry{ino: st.Ino, serial: v}
	c.mu.Unlock()
	return v
}
