package transport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdPort is a virtio-serial port file descriptor in non-blocking mode, with
// an eventfd to interrupt a wait for input and SIGIO for host events: the
// virtio_console driver signals the owner of an O_ASYNC descriptor when the
// host opens or closes the port and when data arrives.
type fdPort struct {
	fd, efd int
	sigio   chan os.Signal
}

// openPort opens the port at path.
func openPort(path string) (port, error) { return openFDPort(path) }

// locate returns the path of the port: the one given, or the one found by
// name (FindPortNamed) or as the agent's port (FindPort).
func (d *device) locate() (string, error) {
	if d.opts.Path == "" {
		if d.opts.PortName != "" {
			return FindPortNamed(d.opts.PortName, d.opts.DevRoot, d.opts.SysRoot)
		}
		return FindPort(d.opts.DevRoot, d.opts.SysRoot)
	}
	if _, err := os.Stat(d.opts.Path); err != nil {
		return "", err // *fs.PathError: already "stat PATH: ..."
	}
	return d.opts.Path, nil
}

// isSocket reports whether path is a unix socket standing in for the port
// (served by dialing it).
func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSocket
}

func openFDPort(path string) (port, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err // EBUSY: another process holds the port
	}
	p, err := newFDPort(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return p, nil
}

// newFDPort takes ownership of fd, which must be non-blocking. It makes this
// process the owner of fd's SIGIO; WatchHost turns the signals on.
func newFDPort(fd int) (*fdPort, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	p := &fdPort{fd: fd, efd: efd, sigio: make(chan os.Signal, 1)}
	// Catch SIGIO before anything can raise it for this descriptor.
	signal.Notify(p.sigio, syscall.SIGIO)
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETOWN, os.Getpid()); err != nil {
		signal.Stop(p.sigio)
		unix.Close(efd)
		return nil, fmt.Errorf("fcntl F_SETOWN: %w", err)
	}
	return p, nil
}

func (p *fdPort) Read(b []byte) (int, error)  { return p.transfer("read", unix.Read, b) }
func (p *fdPort) Write(b []byte) (int, error) { return p.transfer("write", unix.Write, b) }

// transfer is one read or write (call) of b on the port: retried on EINTR,
// errWouldBlock when the port is not ready (EAGAIN), other errors named
// with op.
func (p *fdPort) transfer(op string, call func(fd int, b []byte) (int, error), b []byte) (int, error) {
	for {
		n, err := call(p.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, fmt.Errorf("%s port: %w", op, err)
		}
		return n, nil
	}
}

// poll waits for events on fds, retrying on EINTR.
func poll(fds []unix.PollFd, timeout int) error {
	for {
		_, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll port: %w", err)
		}
		return nil
	}
}

func (p *fdPort) WaitRead() error {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}, {Fd: int32(p.efd), Events: unix.POLLIN}}
	if err := poll(fds, -1); err != nil {
		return err
	}
	if fds[1].Revents&unix.POLLIN != 0 {
		return errInterrupted
	}
	if fds[0].Revents&unix.POLLNVAL != 0 {
		return errors.New("poll port: invalid file descriptor")
	}
	return nil
}

func (p *fdPort) WaitWrite() (hup bool, err error) {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLOUT}}
	if err := poll(fds, -1); err != nil {
		return false, err
	}
	switch r := fds[0].Revents; {
	case r&unix.POLLNVAL != 0:
		return false, errors.New("poll port: invalid file descriptor")
	case r&unix.POLLHUP != 0:
		return true, nil
	case r&unix.POLLERR != 0:
		return false, errors.New("poll port: error condition")
	}
	return false, nil
}

func (p *fdPort) HostConnected() (bool, error) {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	if err := poll(fds, 0); err != nil {
		return false, err
	}
	if fds[0].Revents&unix.POLLNVAL != 0 {
		return false, errors.New("poll port: invalid file descriptor")
	}
	return fds[0].Revents&unix.POLLHUP == 0, nil
}

// WatchHost sets or clears O_ASYNC, which makes the kernel send SIGIO.
func (p *fdPort) WatchHost(on bool) error {
	flags, err := unix.FcntlInt(uintptr(p.fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("fcntl F_GETFL: %w", err)
	}
	want := flags &^ unix.O_ASYNC
	if on {
		want |= unix.O_ASYNC
	}
	if want == flags {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(p.fd), unix.F_SETFL, want); err != nil {
		return fmt.Errorf("fcntl F_SETFL O_ASYNC: %w", err)
	}
	return nil
}

// HostEvents delivers SIGIO. Every fdPort in the process receives every
// SIGIO; a wake-up for another descriptor costs one extra check.
func (p *fdPort) HostEvents() <-chan os.Signal { return p.sigio }

func (p *fdPort) Interrupt() {
	one := [8]byte{1}
	_, _ = unix.Write(p.efd, one[:])
}

func (p *fdPort) ClearInterrupt() {
	var b [8]byte
	_, _ = unix.Read(p.efd, b[:])
}

func (p *fdPort) Close() error {
	unix.Close(p.efd)
	err := unix.Close(p.fd) // also ends the descriptor's SIGIO
	signal.Stop(p.sigio)
	if err != nil {
		return fmt.Errorf("close port: %w", err)
	}
	return nil
}
