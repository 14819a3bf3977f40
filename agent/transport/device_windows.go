package transport

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/windows"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// DefaultDevice is the port as the virtio-win vioserial driver names it: a
// symbolic link \DosDevices\org.kvmmanager.agent.0 in the global namespace.
const DefaultDevice = `\\.\Global\` + protocol.PortName

// ErrNoPort is wrapped by locate's error when no port was found.
var ErrNoPort = errors.New("virtio-serial port " + protocol.PortName + " not found (is the virtio-win vioserial driver installed and the channel configured?)")

// ioctlGetInformation is the vioserial driver's IOCTL_GET_INFORMATION:
// CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_OUT_DIRECT, FILE_ANY_ACCESS).
// Its output is VIRTIO_PORT_INFO: ULONG Id; BOOLEAN OutVqFull,
// HostConnected, GuestConnected; CHAR Name[].
const ioctlGetInformation = 0x22<<16 | 0x800<<2 | 2

// writeFullWait is how long a write waits before trying again when the
// driver's output queue is full (ERROR_CANT_WAIT: the host does not read).
const writeFullWait = 20 * time.Millisecond

// openPort opens the port the way qemu-ga's channel-win32.c does:
// CreateFile with GENERIC_READ|GENERIC_WRITE, no sharing (the driver allows
// one guest connection anyway), OPEN_EXISTING and FILE_FLAG_OVERLAPPED. A
// named pipe (\\.\pipe\NAME) opens through the same call; the tests use one
// as the port.
func openPort(path string) (port, error) {
	p16, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateFile(p16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
		windows.OPEN_EXISTING, windows.FILE_FLAG_OVERLAPPED, 0)
	if err != nil {
		return nil, err // ERROR_ACCESS_DENIED or ERROR_SHARING_VIOLATION: another process holds the port
	}
	p := &handlePort{h: h, pipe: isPipePath(path)}
	if p.rev, err = windows.CreateEvent(nil, 1, 0, nil); err != nil {
		windows.CloseHandle(h)
		return nil, fmt.Errorf("CreateEvent: %w", err)
	}
	if p.wev, err = windows.CreateEvent(nil, 1, 0, nil); err != nil {
		windows.CloseHandle(p.rev)
		windows.CloseHandle(h)
		return nil, fmt.Errorf("CreateEvent: %w", err)
	}
	return p, nil
}

func isPipePath(path string) bool {
	return strings.HasPrefix(strings.ToLower(path), `\\.\pipe\`)
}

// locate returns the path of the port without opening it (opening tells the
// host that the guest connected): the one given with --device, or the
// vioserial port if the driver has created its link. A named pipe is
// returned as is; opening it says whether it is there.
func (d *device) locate() (string, error) {
	path := d.opts.Path
	if path == "" {
		path = DefaultDevice
		if d.opts.PortName != "" {
			path = `\\.\Global\` + d.opts.PortName
		}
	}
	if isPipePath(path) {
		return path, nil
	}
	if !strings.HasPrefix(path, `\\`) {
		// A file system path (tests): it must exist.
		if _, err := os.Stat(path); err != nil {
			return "", err // *fs.PathError: already "stat PATH: ..."
		}
		return path, nil
	}
	name := path
	for _, prefix := range []string{`\\.\Global\`, `\\.\`, `\\?\Global\`, `\\?\`} {
		if len(name) > len(prefix) && strings.EqualFold(name[:len(prefix)], prefix) {
			name = name[len(prefix):]
			break
		}
	}
	n16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return "", fmt.Errorf("find port %s: %w", path, err)
	}
	var target [512]uint16
	if _, err := windows.QueryDosDevice(n16, &target[0], uint32(len(target))); err != nil {
		return "", fmt.Errorf("find port: no device %s (QueryDosDevice %s: %v): %w", path, name, err, ErrNoPort)
	}
	return path, nil
}

// CheckPort reports whether the vioserial driver shows the agent's port
// (the installer's check), without opening it.
func CheckPort() error {
	d := &device{}
	_, err := d.locate()
	return err
}

// isSocket is false: on Windows a stand-in for the port is a named pipe,
// served through openPort like the port itself.
func isSocket(string) bool { return false }

// errPipeClosed ends a session on a named pipe: the pipe's server (the
// stand-in host) closed it, and the handle is of no further use.
var errPipeClosed = errors.New("the named pipe was closed by its server")

// handlePort is the port opened for overlapped I/O. Unlike the Linux port
// it does not poll: a read waits in the driver until data comes. The
// vioserial driver completes a read at once with
// STATUS_INSUFFICIENT_RESOURCES (ERROR_NO_SYSTEM_RESOURCES) when no host is
// connected and no data is buffered; like qemu-ga, that (and
// ERROR_HANDLE_EOF) is the port's end of file, after which the device waits
// for a host by asking the driver (IOCTL_GET_INFORMATION's HostConnected)
// with a backoff up to a second, the way Linux waits when SIGIO is missing.
type handlePort struct {
	h        windows.Handle
	rev, wev windows.Handle // manual-reset events of the read and write OVERLAPPED
	pipe     bool

	mu          sync.Mutex // guards reading and the interrupt
	reading     *windows.Overlapped
	interrupted atomic.Bool
	closeOnce   sync.Once
}

// Read waits for data: it returns (n, nil), (0, nil) for the port's end of
// file (no host), or errWouldBlock once Interrupt was called.
func (p *handlePort) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	ov := &windows.Overlapped{HEvent: p.rev}
	windows.ResetEvent(p.rev)
	p.mu.Lock()
	if p.interrupted.Load() {
		p.mu.Unlock()
		return 0, errWouldBlock
	}
	p.reading = ov
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.reading = nil
		p.mu.Unlock()
	}()
	var n uint32
	err := windows.ReadFile(p.h, b, &n, ov)
	if errors.Is(err, windows.ERROR_IO_PENDING) {
		err = windows.GetOverlappedResult(p.h, ov, &n, true)
	}
	switch {
	case err == nil && n > 0:
		return int(n), nil
	case err == nil, errors.Is(err, windows.ERROR_HANDLE_EOF), errors.Is(err, windows.ERROR_NO_SYSTEM_RESOURCES):
		return 0, nil
	case errors.Is(err, windows.ERROR_OPERATION_ABORTED):
		if p.interrupted.Load() {
			return 0, errWouldBlock
		}
		return 0, nil // cancelled by something else: read again
	case errors.Is(err, windows.ERROR_BROKEN_PIPE), errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED):
		return 0, errPipeClosed
	default:
		return 0, fmt.Errorf("read port: %w", err)
	}
}

// Write writes b, waiting for the driver to take it.
func (p *handlePort) Write(b []byte) (int, error) {
	ov := &windows.Overlapped{HEvent: p.wev}
	windows.ResetEvent(p.wev)
	var n uint32
	err := windows.WriteFile(p.h, b, &n, ov)
	if errors.Is(err, windows.ERROR_IO_PENDING) {
		err = windows.GetOverlappedResult(p.h, ov, &n, true)
	}
	switch {
	case err == nil:
		return int(n), nil
	case errors.Is(err, windows.ERROR_CANT_WAIT):
		return int(n), errWouldBlock // output queue full
	case errors.Is(err, windows.ERROR_BROKEN_PIPE), errors.Is(err, windows.ERROR_NO_DATA), errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED):
		return int(n), errPipeClosed
	default:
		return int(n), fmt.Errorf("write port: %w", err)
	}
}

// WaitRead reports an interrupt; otherwise Read itself waits.
func (p *handlePort) WaitRead() error {
	if p.interrupted.Load() {
		return errInterrupted
	}
	return nil
}

// WaitWrite runs after the driver's output queue was full: it waits a
// little and says whether a host is there to drain it.
func (p *handlePort) WaitWrite() (hup bool, err error) {
	time.Sleep(writeFullWait)
	ok, err := p.HostConnected()
	return !ok, err
}

// HostConnected asks the vioserial driver (IOCTL_GET_INFORMATION). A handle
// that does not know the request (a named pipe) has its host for as long
// as it is open.
func (p *handlePort) HostConnected() (bool, error) {
	var info [64]byte
	var n uint32
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return false, fmt.Errorf("CreateEvent: %w", err)
	}
	defer windows.CloseHandle(ev)
	ov := &windows.Overlapped{HEvent: ev}
	err = windows.DeviceIoControl(p.h, ioctlGetInformation, nil, 0, &info[0], uint32(len(info)), &n, ov)
	if errors.Is(err, windows.ERROR_IO_PENDING) {
		err = windows.GetOverlappedResult(p.h, ov, &n, true)
	}
	switch {
	case err == nil && n >= 6:
		return info[5] != 0, nil // VIRTIO_PORT_INFO.HostConnected
	case err == nil, errors.Is(err, windows.ERROR_INVALID_FUNCTION), errors.Is(err, windows.ERROR_NOT_SUPPORTED),
		errors.Is(err, windows.ERROR_INVALID_PARAMETER), errors.Is(err, windows.ERROR_MORE_DATA):
		return true, nil
	default:
		return false, fmt.Errorf("port IOCTL_GET_INFORMATION: %w", err)
	}
}

// errNoHostEvents makes waitHost ask HostConnected with a backoff.
var errNoHostEvents = errors.New("the vioserial port signals no host events to a process")

// WatchHost is not supported: waits poll HostConnected.
func (p *handlePort) WatchHost(bool) error { return errNoHostEvents }

// HostEvents is never ready.
func (p *handlePort) HostEvents() <-chan os.Signal { return nil }

// Interrupt cancels a read in progress and makes later reads return
// errWouldBlock until ClearInterrupt.
func (p *handlePort) Interrupt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interrupted.Store(true)
	if p.reading != nil {
		_ = windows.CancelIoEx(p.h, p.reading)
	}
}

func (p *handlePort) ClearInterrupt() { p.interrupted.Store(false) }

func (p *handlePort) Close() error {
	var err error
	p.closeOnce.Do(func() {
		err = windows.CloseHandle(p.h)
		windows.CloseHandle(p.rev)
		windows.CloseHandle(p.wev)
	})
	if err != nil {
		return fmt.Errorf("close port: %w", err)
	}
	return nil
}
