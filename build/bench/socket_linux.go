package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
)

// fdConn is a unix stream socket used with plain blocking read and write
// system calls. The benchmark client waits for one reply at a time, so a
// blocking read, woken directly by the kernel, costs the client less than
// Go's netpoller (park the goroutine, epoll, wake it), and the client's
// share of every measured round trip, the same for both agents, shrinks.
type fdConn struct{ fd int }

// dialUnix connects to the unix socket at path.
func dialUnix(ctx context.Context, path string) (*fdConn, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	c := &fdConn{fd: fd}
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *fdConn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(c.fd, p)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return 0, fmt.Errorf("read: %w", errTimeout)
		case err != nil:
			return 0, fmt.Errorf("read: %w", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c *fdConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := syscall.Write(c.fd, p[done:])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return done, fmt.Errorf("write: %w", errTimeout)
		case err != nil:
			return done, fmt.Errorf("write: %w", err)
		}
		done += n
	}
	return done, nil
}

func (c *fdConn) Close() error { return syscall.Close(c.fd) }

var errTimeout = errors.New("timed out")

// setTimeout bounds every later read and write to d (0: no bound).
func (c *fdConn) setTimeout(d time.Duration) error {
	tv := syscall.NsecToTimeval(d.Nanoseconds())
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			return fmt.Errorf("set socket timeout: %w", err)
		}
	}
	return nil
}
