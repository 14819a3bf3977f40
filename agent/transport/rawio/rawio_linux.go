// Package rawio reads and writes a connection's non-blocking descriptor with
// raw system calls, for the agent's request loops (protocol 1.0's server and
// the QGA dialect); the runtime's poller still does the waiting.
package rawio

import (
	"io"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// New returns a reader and writer of rw's non-blocking descriptor that
// makes raw system calls, the waiting left to the runtime's poller as
// before, or nil when rw has no descriptor or it is blocking (a raw read
// would then hold the runtime's thread). A request and its reply then cost
// one read and one write and no more: an ordinary system call, made while
// the runtime has nothing else to run, wakes its monitor thread (sysmon),
// which costs a context switch or two per request, more than a ping
// itself. Deadlines, closing and the rest stay with rw.
func New(rw io.ReadWriter) io.ReadWriter {
	if r := newRawIO(rw); r != nil {
		return r
	}
	return nil
}

// rawIO is New's reader and writer.
type rawIO struct {
	rc syscall.RawConn
}

// newRawIO returns rawIO over rw's descriptor, or nil when rw has none or
// it is blocking (a raw read would then hold the runtime's thread).
func newRawIO(rw io.ReadWriter) *rawIO {
	sc, ok := rw.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	nonblock := false
	if err := rc.Control(func(fd uintptr) {
		fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		nonblock = err == nil && fl&unix.O_NONBLOCK != 0
	}); err != nil || !nonblock {
		return nil
	}
	return &rawIO{rc: rc}
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait in the poller
			}
			n, errno = int(m), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (r *rawIO) Write(p []byte) (int, error) {
	done := 0
	var errno syscall.Errno
	err := r.rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[done])), uintptr(len(p)-done))
			switch e {
			case 0:
				done += int(m)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait in the poller
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err == nil && errno != 0 {
		err = errno
	}
	return done, err
}
