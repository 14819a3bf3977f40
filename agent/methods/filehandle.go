package methods

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Open files for the QEMU guest agent dialect's guest-file-* commands,
// under the same path policy as file_read and file_write: a read-only mode
// needs the path inside allowed_read_paths, a writing mode inside
// allowed_write_paths, a "+" mode (read and write) inside both. Only
// regular files are opened; a writing mode does not follow a symbolic link
// in the last component (as file_write). Paths are resolved with os.Root, so
// "..", symlinks and /proc magic links cannot lead outside the entry.

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
		if t.Name == "." {
			return fmt.Errorf("%w (directory)", errNotRegular)
		}
		// Stat first: only regular files are opened (a FIFO would block, a
		// device open can have side effects); the final name is never
		// followed (the policy followed the trusted links already).
		fi, err := statAt(t)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			return errSymlink
		case err == nil && !fi.Mode().IsRegular():
			return fmt.Errorf("%w (%s)", errNotRegular, fileKind(fi.Mode()))
		case err != nil && (!writing || !errors.Is(err, fs.ErrNotExist)):
			return err
		}
		fl := flags | syscall.O_NONBLOCK | syscall.O_NOCTTY | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
		opened, err := openAt(t, t.Name, fl, defaultFilePerm)
		if err != nil {
			return err
		}
		fi, err = opened.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("%w (%s)", errNotRegular, fileKind(fi.Mode()))
		}
		if err == nil {
			uid, nlink := owner(fi)
			err = policy.CheckFile(t, uid, nlink, writing)
		}
		if err != nil {
			opened.Close()
			return err
		}
		f = opened
		return nil
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
		if !sameInode(fi, other) {
			return protocol.Errorf(protocol.CodePermissionDenied, "path %q resolves to another file inside %s", path, s.read.Key())
		}
		return nil
	})
	if err != nil {
		return fileError(path, err)
	}
	return nil
}

// sameInode reports whether a and b describe the same file.
func sameInode(a, b fs.FileInfo) bool {
	da, ia, oka := devIno(a)
	db, ib, okb := devIno(b)
	return oka && okb && da == db && ia == ib
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
