package methods

import (
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/policy"
)

// The file methods' system calls on a resolved policy.Target: every open is
// relative to the target's directory handle, never follows a link and never
// blocks (O_NONBLOCK, then a type check on the handle).

// statAt is lstat of t.Name inside t.Dir (fs.ErrNotExist when missing).
func statAt(t *policy.Target) (fs.FileInfo, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(int(t.Dir.Fd()), t.Name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "lstat", Path: t.Path, Err: err}
		}
		return &statInfo{name: t.Name, st: st}, nil
	}
}

// openReadAt opens t for reading: no link followed (ELOOP), no wait on a
// FIFO swapped in meanwhile, no controlling terminal.
func openReadAt(t *policy.Target) (*os.File, error) {
	return openAt(t, t.Name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// createAt creates the new file name in t.Dir, mode 0600, failing if any
// file (or link) of that name exists.
func createAt(t *policy.Target, name string) (*os.File, error) {
	return openAt(t, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

func openAt(t *policy.Target, name string, flags int, perm uint32) (*os.File, error) {
	for {
		fd, err := unix.Openat(int(t.Dir.Fd()), name, flags, perm)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: t.Path, Err: err}
		}
		return os.NewFile(uintptr(fd), t.Path), nil
	}
}

// renameAt replaces t.Name by from (both in t.Dir).
func renameAt(t *policy.Target, from string) error {
	d := int(t.Dir.Fd())
	if err := unix.Renameat(d, from, d, t.Name); err != nil {
		return &fs.PathError{Op: "rename", Path: t.Path, Err: err}
	}
	return nil
}

func removeAt(t *policy.Target, name string) error {
	if err := unix.Unlinkat(int(t.Dir.Fd()), name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// statInfo is an fs.FileInfo of a unix.Stat_t.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (i *statInfo) Name() string       { return i.name }
func (i *statInfo) Size() int64        { return i.st.Size }
func (i *statInfo) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }
func (i *statInfo) IsDir() bool        { return i.Mode().IsDir() }
func (i *statInfo) Sys() any           { return &i.st }
func (i *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.st.Mode & 0o777)
	switch i.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	if i.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if i.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if i.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// owner returns the owner and link count of a file from its FileInfo.
func owner(fi fs.FileInfo) (uid uint32, nlink uint64) {
	switch st := fi.Sys().(type) {
	case *unix.Stat_t:
		return st.Uid, uint64(st.Nlink)
	case *syscallStat:
		return st.Uid, uint64(st.Nlink)
	}
	return 0, 1
}

type syscallStat = syscall.Stat_t

// groupOf returns the group of a file from its FileInfo.
func groupOf(fi fs.FileInfo) uint32 {
	switch st := fi.Sys().(type) {
	case *unix.Stat_t:
		return st.Gid
	case *syscallStat:
		return st.Gid
	}
	return 0
}
