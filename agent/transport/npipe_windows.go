package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Named pipes with overlapped handles and event-driven ReadFile/WriteFile
// (see pipeConn), which behave the same on Windows and under Wine (whose
// completion-port pipe I/O, as go-winio uses it, does not complete).

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
	mode := uint32(windows.PIPE_ACCESS_DUPLEX | windows.FILE_FLAG_OVERLAPPED)
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
	err := connectPipe(h)
	if err != nil {
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
	c, err := newPipeConn(h, l.path)
	if err != nil {
		windows.DisconnectNamedPipe(h)
		return nil, err
	}
	return c, nil
}

// connectPipe waits for a client to open the pipe instance h.
func connectPipe(h windows.Handle) error {
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return fmt.Errorf("CreateEvent: %w", err)
	}
	defer windows.CloseHandle(ev)
	ov := &windows.Overlapped{HEvent: ev}
	err = windows.ConnectNamedPipe(h, ov)
	if errors.Is(err, windows.ERROR_IO_PENDING) {
		var n uint32
		err = windows.GetOverlappedResult(h, ov, &n, true)
	}
	if errors.Is(err, windows.ERROR_PIPE_CONNECTED) {
		return nil // the client came before ConnectNamedPipe
	}
	return err
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
		windows.FILE_FLAG_OVERLAPPED|windows.SECURITY_SQOS_PRESENT|windows.SECURITY_IDENTIFICATION, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return newPipeConn(h, path)
}

// pipeConn is one end of a named pipe connection, opened for overlapped
// I/O and driven with an event per direction (not the runtime's completion
// port). Windows serialises synchronous I/O on one handle: with a
// synchronous handle a read waiting for the peer holds up every write on
// the same handle, and a close cannot cancel it (under Wine it hangs). With
// overlapped I/O a read and a write run at once, and CancelIoEx ends either.
type pipeConn struct {
	h      windows.Handle
	path   string
	rd, wr pipeDir

	mu     sync.Mutex // guards closed and both directions' deadline state
	closed bool
	once   sync.Once
}

// pipeDir is one direction of a pipeConn: its event, the I/O in progress
// and its deadline.
type pipeDir struct {
	io      sync.Mutex // one read (or write) at a time
	ev      windows.Handle
	ov      *windows.Overlapped // the operation in progress, under pipeConn.mu
	timer   *time.Timer
	expired bool
}

func newPipeConn(h windows.Handle, path string) (*pipeConn, error) {
	c := &pipeConn{h: h, path: path}
	for _, d := range []*pipeDir{&c.rd, &c.wr} {
		ev, err := windows.CreateEvent(nil, 1, 0, nil)
		if err != nil {
			c.closeHandles()
			return nil, fmt.Errorf("pipe %s: CreateEvent: %w", path, err)
		}
		d.ev = ev
	}
	return c, nil
}

func (c *pipeConn) closeHandles() {
	for _, d := range []*pipeDir{&c.rd, &c.wr} {
		if d.ev != 0 {
			windows.CloseHandle(d.ev)
		}
	}
	windows.CloseHandle(c.h)
}

// do runs one overlapped ReadFile or WriteFile and waits for it.
func (c *pipeConn) do(d *pipeDir, b []byte, write bool) (int, error) {
	d.io.Lock()
	defer d.io.Unlock()
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return 0, net.ErrClosed
	case d.expired:
		c.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	ov := &windows.Overlapped{HEvent: d.ev}
	d.ov = ov
	c.mu.Unlock()
	windows.ResetEvent(d.ev)
	var n uint32
	var err error
	if write {
		err = windows.WriteFile(c.h, b, &n, ov)
	} else {
		err = windows.ReadFile(c.h, b, &n, ov)
	}
	if errors.Is(err, windows.ERROR_IO_PENDING) {
		// A deadline or Close that came between the check above and the
		// start of the I/O found nothing to cancel: look again.
		c.mu.Lock()
		if c.closed || d.expired {
			windows.CancelIoEx(c.h, ov)
		}
		c.mu.Unlock()
		err = windows.GetOverlappedResult(c.h, ov, &n, true)
	}
	c.mu.Lock()
	d.ov = nil
	closed, expired := c.closed, d.expired
	c.mu.Unlock()
	switch {
	case err == nil:
		if n == 0 && !write && len(b) > 0 {
			return 0, io.EOF
		}
		return int(n), nil
	case closed:
		return int(n), net.ErrClosed
	case errors.Is(err, windows.ERROR_OPERATION_ABORTED) && expired:
		return int(n), os.ErrDeadlineExceeded
	case errors.Is(err, windows.ERROR_BROKEN_PIPE), errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED), errors.Is(err, windows.ERROR_NO_DATA):
		if write {
			return int(n), fmt.Errorf("write %s: %w", c.path, errPipeClosed)
		}
		return int(n), io.EOF // the peer closed its end
	case write:
		return int(n), fmt.Errorf("write %s: %w", c.path, err)
	default:
		return int(n), fmt.Errorf("read %s: %w", c.path, err)
	}
}

func (c *pipeConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return c.do(&c.rd, b, false)
}

func (c *pipeConn) Write(b []byte) (int, error) {
	var total int
	for total < len(b) {
		n, err := c.do(&c.wr, b[total:], true)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close cancels the I/O in progress in both directions, waits for it to
// end, and closes the handle. It does not disconnect a server end (that
// would discard what the peer has not read yet): the peer reads what was
// written and then the end of the pipe.
func (c *pipeConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		for _, d := range []*pipeDir{&c.rd, &c.wr} {
			if d.timer != nil {
				d.timer.Stop()
			}
		}
		c.mu.Unlock()
		windows.CancelIoEx(c.h, nil)
		c.rd.io.Lock()
		c.wr.io.Lock()
		c.closeHandles()
		c.wr.io.Unlock()
		c.rd.io.Unlock()
	})
	return nil
}

func (c *pipeConn) LocalAddr() net.Addr  { return pipeAddr(c.path) }
func (c *pipeConn) RemoteAddr() net.Addr { return pipeAddr(c.path) }

// setDeadline arms d's deadline: a time in the past cancels the I/O in
// progress at once, a future one when it comes, zero clears it. I/O that
// ends by a deadline returns os.ErrDeadlineExceeded, as net.Conn says.
func (c *pipeConn) setDeadline(d *pipeDir, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.expired = false
	if c.closed || t.IsZero() {
		return
	}
	expire := func() {
		d.expired = true
		if d.ov != nil {
			windows.CancelIoEx(c.h, d.ov)
		}
	}
	wait := time.Until(t)
	if wait <= 0 {
		expire()
		return
	}
	var timer *time.Timer
	timer = time.AfterFunc(wait, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if d.timer == timer && !c.closed {
			expire()
		}
	})
	d.timer = timer
}

func (c *pipeConn) SetDeadline(t time.Time) error {
	c.setDeadline(&c.rd, t)
	c.setDeadline(&c.wr, t)
	return nil
}

func (c *pipeConn) SetReadDeadline(t time.Time) error  { c.setDeadline(&c.rd, t); return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { c.setDeadline(&c.wr, t); return nil }
