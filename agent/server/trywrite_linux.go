package server

import (
	"errors"
	"net"
	"syscall"
)

// tryWriter returns a function that writes to c what fits in its socket
// buffer without blocking: net.Conn descriptors are non-blocking, so one
// write(2) either takes (part of) the bytes or fails with EAGAIN.
func tryWriter(c net.Conn) func([]byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var t tryWrite
	t.fn = t.write
	return func(b []byte) (int, error) {
		t.b, t.n, t.err = b, 0, nil
		if err := rc.Write(t.fn); err != nil {
			return 0, err
		}
		n, err := t.n, t.err
		t.b = nil
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			err = nil
		}
		return n, err
	}
}

// tryWrite holds one non-blocking write's arguments and results, so that
// the callback handed to RawConn.Write is allocated once per connection.
type tryWrite struct {
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

func (t *tryWrite) write(fd uintptr) bool {
	n, err := syscall.Write(int(fd), t.b)
	if n > 0 {
		t.n = n
	}
	t.err = err
	return true // never wait for the descriptor to become writable
}
