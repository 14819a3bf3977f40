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
//
// The result also has TryWrite(b []byte) (int, error), one write that never
// waits. One read and one write (Write or TryWrite) may run at a time, as
// on any stream: its callers already serialise each direction.
func New(rw io.ReadWriter) io.ReadWriter {
	if r := newRawIO(rw); r != nil {
		return r
	}
	return nil
}

// rawIO is New's reader and writer. The callbacks handed to the runtime
// are made once, with the state of the one read and the one write in
// flight, so that a call allocates nothing.
type rawIO struct {
	rc                     syscall.RawConn
	rd, wr                 op
	readFn, writeFn, tryFn func(fd uintptr) bool
}

// op is one read or write: its buffer, the bytes done and the error.
type op struct {
	p     []byte
	n     int
	errno syscall.Errno
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
	r := &rawIO{rc: rc}
	r.readFn, r.writeFn, r.tryFn = r.read, r.write, r.try
	return r
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rd = op{p: p}
	err := r.rc.Read(r.readFn)
	n, errno := r.rd.n, r.rd.errno
	r.rd.p = nil
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

// read is one read(2) of r.rd; false sends the runtime to wait in the poller.
func (r *rawIO) read(fd uintptr) bool {
	p := r.rd.p
	for {
		m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.rd.n, r.rd.errno = int(m), e
		return true
	}
}

func (r *rawIO) Write(p []byte) (int, error) {
	r.wr = op{p: p}
	err := r.rc.Write(r.writeFn)
	return r.finishWrite(err)
}

// TryWrite writes what of p fits without waiting: one write(2), which
// takes (part of) the bytes or finds the descriptor full (0, nil).
func (r *rawIO) TryWrite(p []byte) (int, error) {
	r.wr = op{p: p}
	err := r.rc.Write(r.tryFn)
	return r.finishWrite(err)
}

func (r *rawIO) finishWrite(err error) (int, error) {
	n, errno := r.wr.n, r.wr.errno
	r.wr.p = nil
	if err == nil && errno != 0 {
		err = errno
	}
	return n, err
}

// write writes all of r.wr; false sends the runtime to wait in the poller.
func (r *rawIO) write(fd uintptr) bool {
	for r.wr.n < len(r.wr.p) {
		switch m, e := rawWrite(fd, r.wr.p[r.wr.n:]); e {
		case 0:
			r.wr.n += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.wr.errno = e
			return true
		}
	}
	return true
}

// try makes one write of r.wr and never waits.
func (r *rawIO) try(fd uintptr) bool {
	if len(r.wr.p) == 0 {
		return true
	}
	switch m, e := rawWrite(fd, r.wr.p); e {
	case 0:
		r.wr.n = m
	case syscall.EINTR, syscall.EAGAIN:
	default:
		r.wr.errno = e
	}
	return true
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(m), e
}
