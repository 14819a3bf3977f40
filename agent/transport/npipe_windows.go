package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Named pipes with synchronous handles and plain ReadFile/WriteFile, which
// behave the same on Windows and under Wine (whose completion-port pipe I/O,
// as go-winio uses it, does not complete).

const pipeBuffer = 64 << 10

// pipeAddr is a named pipe's address.
type pipeAddr string

func (a pipeAddr) Network() string { return "npipe" }
func (a pipeAddr) String() string  { return string(a) }

// pipeListener accepts connections on a named pipe, one instance at a time.
type pipeListener struct {
	path string
	sa   *windows.SecurityAttributes

	mu     sync.Mutex
	next   windows.Handle // the instance the next Accept connects
	closed bool
}

// ListenPipe creates the named pipe path (\\.\pipe\NAME), which only
// Administrators and SYSTEM may open, and fails if the name is taken.
func ListenPipe(path string) (net.Listener, error) {
	sd, err := windows.SecurityDescriptorFromString(pipeSDDL)
	if err != nil {
		return nil, fmt.Errorf("pipe security descriptor: %w", err)
	}
	l := &pipeListener{path: path, sa: &windows.SecurityAttributes{
		Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}}
	h, err := l.instance(true)
	if err != nil {
		return nil, err
	}
	l.next = h
	return l, nil
}

// instance creates one pipe instance; the first claims the name.
func (l *pipeListener) instance(first bool) (windows.Handle, error) {
	p16, err := windows.UTF16PtrFromString(l.path)
	if err != nil {
		return 0, err
	}
	mode := uint32(windows.PIPE_ACCESS_DUPLEX)
	if first {
		mode |= windows.FILE_FLAG_FIRST_PIPE_INSTANCE
	}
	h, err := windows.CreateNamedPipe(p16, mode,
		windows.PIPE_TYPE_BYTE|windows.PIPE_READMODE_BYTE|windows.PIPE_WAIT|windows.PIPE_REJECT_REMOTE_CLIENTS,
		windows.PIPE_UNLIMITED_INSTANCES, pipeBuffer, pipeBuffer, 0, l.sa)
	if err != nil {
		return 0, fmt.Errorf("CreateNamedPipe %s: %w", l.path, err)
	}
	return h, nil
}

func (l *pipeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, net.ErrClosed
	}
	h := l.next
	l.mu.Unlock()
	err := windows.ConnectNamedPipe(h, nil)
	if err != nil && !errors.Is(err, windows.ERROR_PIPE_CONNECTED) {
		return nil, fmt.Errorf("ConnectNamedPipe %s: %w", l.path, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed { // Close connected to wake us
		windows.DisconnectNamedPipe(h)
		windows.CloseHandle(h)
		l.next = 0
		return nil, net.ErrClosed
	}
	next, err := l.instance(false)
	if err != nil {
		windows.DisconnectNamedPipe(h)
		windows.CloseHandle(h)
		return nil, err
	}
	l.next = next
	return newPipeConn(h, l.path, true), nil
}

// Close stops accepting: a waiting Accept is woken by connecting to it.
func (l *pipeListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	if c, err := dialPipe(l.path); err == nil {
		c.Close()
	}
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.path) }

// DialPipe connects to the named pipe path, waiting while all its instances
// are busy, until ctx ends.
func DialPipe(ctx context.Context, path string) (net.Conn, error) {
	for {
		c, err := dialPipe(path)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, windows.ERROR_PIPE_BUSY) && !errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial %s: %w (%v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dialPipe(path string) (*pipeConn, error) {
	p16, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateFile(p16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING,
		windows.SECURITY_SQOS_PRESENT|windows.SECURITY_IDENTIFICATION, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return newPipeConn(h, path, false), nil
}

// pipeConn is one end of a named pipe connection.
type pipeConn struct {
	f      *os.File
	h      windows.Handle
	path   string
	server bool
	once   sync.Once
}

func newPipeConn(h windows.Handle, path string, server bool) *pipeConn {
	return &pipeConn{f: os.NewFile(uintptr(h), path), h: h, path: path, server: server}
}

func (c *pipeConn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	if err != nil && (errors.Is(err, windows.ERROR_BROKEN_PIPE) || errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED)) {
		return n, errPipeClosed
	}
	return n, err
}

func (c *pipeConn) Write(b []byte) (int, error) { return c.f.Write(b) }

func (c *pipeConn) Close() error {
	c.once.Do(func() {
		if c.server {
			windows.FlushFileBuffers(c.h)
			windows.DisconnectNamedPipe(c.h) // fails the peer's and our pending reads
		}
		windows.CancelIoEx(c.h, nil)
	})
	return c.f.Close()
}

func (c *pipeConn) LocalAddr() net.Addr  { return pipeAddr(c.path) }
func (c *pipeConn) RemoteAddr() net.Addr { return pipeAddr(c.path) }

// SetDeadline, SetReadDeadline and SetWriteDeadline support what the
// server and the client need: a deadline now or in the past cancels the I/O
// in progress on the pipe (both directions: CancelIoEx); a zero or future
// deadline is accepted and not enforced (a pipe write blocks only while the
// peer's buffer is full).
func (c *pipeConn) SetDeadline(t time.Time) error {
	if t.IsZero() || t.After(time.Now()) {
		return nil
	}
	if err := windows.CancelIoEx(c.h, nil); err != nil && !errors.Is(err, windows.ERROR_NOT_FOUND) {
		return err
	}
	return nil
}

func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }
