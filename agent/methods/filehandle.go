//go:build !windows

package methods

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Open files for the QEMU guest agent dialect's guest-file-* commands,
// under the same path policy as file_read and file_write (agent/policy: the
// link rules, the checks for directories other users can write): a
// read-only mode needs the path inside allowed_read_paths, a writing mode
// inside allowed_write_paths, a "+" mode (read and write) inside both. Only
// regular files are opened, never through a link in the last component,
// never blocking on a FIFO or device swapped in.

// fopenFlags maps fopen(3) modes, as qemu-ga accepts them, to open flags.
var fopenFlags = map[string]int{
	"r": os.O_RDONLY, "rb": os.O_RDONLY,
	"w": os.O_WRONLY | os.O_CREATE | os.O_TRUNC, "wb": os.O_WRONLY | os.O_CREATE | os.O_TRUNC,
	"a": os.O_WRONLY | os.O_CREATE | os.O_APPEND, "ab": os.O_WRONLY | os.O_CREATE | os.O_APPEND,
	"r+": os.O_RDWR, "rb+": os.O_RDWR, "r+b": os.O_RDWR,
	"w+": os.O_RDWR | os.O_CREATE | os.O_TRUNC, "wb+": os.O_RDWR | os.O_CREATE | os.O_TRUNC, "w+b": os.O_RDWR | os.O_CREATE | os.O_TRUNC,
	"a+": os.O_RDWR | os.O_CREATE | os.O_APPEND, "ab+": os.O_RDWR | os.O_CREATE | os.O_APPEND, "a+b": os.O_RDWR | os.O_CREATE | os.O_APPEND,
}

// ErrBadOpenMode is OpenFile's error for a mode fopen(3) does not know.
var ErrBadOpenMode = errors.New("invalid file open mode")

// OpenFile opens path in the fopen(3) mode. Errors are *protocol.Error with
// the same codes and texts as file_read and file_write.
func (s *Service) OpenFile(path, mode string) (*os.File, error) {
	flags, ok := fopenFlags[mode]
	if !ok {
		return nil, fmt.Errorf("%w '%s'", ErrBadOpenMode, mode)
	}
	if err := checkFilePath(path); err != nil {
		return nil, err
	}
	writing := flags&(os.O_WRONLY|os.O_RDWR) != 0
	reading := flags&os.O_WRONLY == 0
	paths := s.read
	if writing {
		paths = s.write
	}
	var f *os.File
	err := paths.Do(path, func(t *policy.Target) error {
		opened, err := s.openTarget(t, flags, writing)
		f = opened
		return err
	})
	if err != nil {
		return nil, fileError(path, err)
	}
	if writing && reading {
		// Reading too: the same file must be inside allowed_read_paths.
		if err := s.sameInRead(path, f); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// openTarget opens t in the open flags of an fopen mode. In a directory
// other users can write, a file is created only if none of its name exists
// (O_EXCL: no file a user slipped in meanwhile), and an existing one is
// truncated only after the checks on the opened handle (one name, owned by
// root when writing; policy.CheckFile).
func (s *Service) openTarget(t *policy.Target, flags int, writing bool) (*os.File, error) {
	if t.Name == "." {
		return nil, fmt.Errorf("%w (directory)", errNotRegular)
	}
	fi, err := statAt(t)
	exists := err == nil
	switch {
	case err != nil && !(errors.Is(err, fs.ErrNotExist) && flags&os.O_CREATE != 0):
		return nil, err
	case exists && fi.Mode()&fs.ModeSymlink != 0:
		return nil, errSymlink
	case exists && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w (%s)", errNotRegular, fileKind(fi.Mode()))
	}
	fl := flags&^os.O_TRUNC | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !exists && t.Shared {
		fl |= os.O_EXCL
	}
	f, err := openAt(t, t.Name, fl, uint32(defaultFilePerm))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, err
	}
	if fi, err = f.Stat(); err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%w (%s)", errNotRegular, fileKind(fi.Mode())))
	}
	uid, nlink := owner(fi)
	if err := policy.CheckFile(t, uid, nlink, writing); err != nil {
		return fail(err)
	}
	if flags&os.O_TRUNC != 0 {
		if err := f.Truncate(0); err != nil {
			return fail(err)
		}
	}
	return f, nil
}

// sameInRead checks that path, resolved inside allowed_read_paths, is the
// file f.
func (s *Service) sameInRead(path string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fileError(path, err)
	}
	err = s.read.Do(path, func(t *policy.Target) error {
		other, err := statAt(t)
		if err != nil {
			return err
		}
		if !sameFile(fi, other) {
			return protocol.Errorf(protocol.CodePermissionDenied, "path %q resolves to another file inside %s", path, s.read.Key())
		}
		return nil
	})
	if err != nil {
		return fileError(path, err)
	}
	return nil
}

// sameFile compares device and inode of two stats of any origin (os.Stat's
// or statAt's).
func sameFile(a, b fs.FileInfo) bool {
	da, ia, ok1 := devIno(a)
	db, ib, ok2 := devIno(b)
	return ok1 && ok2 && da == db && ia == ib
}

func devIno(fi fs.FileInfo) (dev, ino uint64, ok bool) {
	switch st := fi.Sys().(type) {
	case *syscall.Stat_t:
		return st.Dev, st.Ino, true
	case *unix.Stat_t:
		return st.Dev, st.Ino, true
	}
	return 0, 0, false
}

// ErrNoData is ReadNoWait's error when the file has nothing to read now.
var ErrNoData = errWouldBlock

// ReadNoWait fills p from f (opened by OpenFile) until p is full or the
// file ends (io.EOF, with the bytes read so far), never waiting: a kernel
// file that would block (/proc/kmsg, tracing pipes) fails with ErrNoData
// instead of parking the caller in the runtime's poller.
func ReadNoWait(f *os.File, p []byte) (int, error) {
	r, err := newNonblockReader(f)
	if err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
