package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Backoff bounds.
const (
	// A missing port or one that fails: retry from 100 ms up to 30 s.
	retryMin = 100 * time.Millisecond
	retryMax = 30 * time.Second
	// Waiting for a host on an open port is driven by the port's host
	// events (SIGIO on the real port). hostEventFallback bounds a wait in
	// case an event is never delivered: the latency a host would see then.
	hostEventFallback = 30 * time.Second
	// A port that cannot deliver host events is polled from 100 ms up to
	// 1 s. The same delays pace sessions that end at once without a byte
	// while the port claims a host is there, so the loop is never hot.
	hostWaitMin = 100 * time.Millisecond
	hostWaitMax = time.Second
)

var (
	errWouldBlock  = errors.New("operation would block")
	errInterrupted = errors.New("wait interrupted")
	// errHostGone is the write error once the host has disconnected.
	errHostGone = errors.New("host disconnected from the virtio-serial port")
)

// port is an open virtio-serial port in non-blocking mode. fdPort (Linux)
// is the real one; tests use a simulated device.
type port interface {
	// Read returns available data, (0, nil) when no host is connected
	// (the port's end of file), or errWouldBlock.
	Read(p []byte) (int, error)
	// Write writes what the port takes now, or returns errWouldBlock.
	Write(p []byte) (int, error)
	// WaitRead blocks until the port is readable or hung up; it returns
	// errInterrupted once Interrupt has been called.
	WaitRead() error
	// WaitWrite blocks until the port is writable; hup reports that no
	// host is connected.
	WaitWrite() (hup bool, err error)
	// HostConnected reports, without blocking, whether a host has the
	// port open (poll without POLLHUP).
	HostConnected() (bool, error)
	// WatchHost turns host events on or off. While on, the port sends a
	// value on HostEvents when a host opens or closes it or data arrives
	// (the real port: O_ASYNC, so the kernel raises SIGIO). An error means
	// the port cannot signal and waits must poll.
	WatchHost(on bool) error
	// HostEvents is the channel WatchHost's events arrive on. It has a
	// buffer of one and a send never blocks, so an event that comes while
	// nobody waits is kept, and several coalesce.
	HostEvents() <-chan os.Signal
	// Interrupt makes WaitRead return errInterrupted until ClearInterrupt.
	Interrupt()
	ClearInterrupt()
	Close() error
}

// DeviceOptions configure ServeDevice.
type DeviceOptions struct {
	// Path is the port (or a unix socket to dial); "" finds the port with
	// FindPort(DevRoot, SysRoot).
	Path string
	// DevRoot and SysRoot default to /dev and /sys.
	DevRoot, SysRoot string
	// Logger receives the connection logs; nil discards them.
	Logger *slog.Logger
}

// device is ServeDevice's state; its function fields are replaced in tests.
type device struct {
	opts  DeviceOptions
	log   *slog.Logger
	open  func(path string) (port, error)
	sleep func(ctx context.Context, d time.Duration) bool
	// after is time.After: the timer that bounds a wait for host events.
	after func(d time.Duration) <-chan time.Time
}

// ServeDevice serves the host on the virtio-serial port until ctx is
// cancelled. It never gives up: a missing port is logged once ("Virtio-serial
// device not found") and looked for again with a backoff of up to 30 s; a
// port is opened once and kept while hosts come and go, each host connection
// being one srv.ServeConn session. If the path is a unix socket, ServeDevice
// dials it and redials when the connection ends.
func ServeDevice(ctx context.Context, opts DeviceOptions, srv Server) error {
	d := &device{opts: opts, log: opts.Logger, open: openFDPort, sleep: sleep, after: time.After}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.opts.DevRoot == "" {
		d.opts.DevRoot = "/dev"
	}
	if d.opts.SysRoot == "" {
		d.opts.SysRoot = "/sys"
	}
	return d.serve(ctx, srv)
}

func (d *device) locate() (string, error) {
	if d.opts.Path == "" {
		return FindPort(d.opts.DevRoot, d.opts.SysRoot)
	}
	if _, err := os.Stat(d.opts.Path); err != nil {
		return "", fmt.Errorf("stat %s: %w", d.opts.Path, err)
	}
	return d.opts.Path, nil
}

func (d *device) serve(ctx context.Context, srv Server) error {
	missing := backoff{min: retryMin, max: retryMax}
	failing := backoff{min: retryMin, max: retryMax}
	lastErr := ""
	for ctx.Err() == nil {
		path, err := d.locate()
		if err != nil {
			// Say it once, not at every retry.
			if lastErr != "not found" {
				d.log.Warn("Virtio-serial device not found", "err", err, "retry", "with backoff up to "+retryMax.String())
				lastErr = "not found"
			} else {
				d.log.Debug("Virtio-serial device not found", "err", err)
			}
			d.sleep(ctx, missing.next())
			continue
		}
		missing.reset()

		var served bool
		if isSocket(path) {
			served, err = d.serveSocket(ctx, path, srv)
		} else {
			served, err = d.servePort(ctx, path, srv)
		}
		if ctx.Err() != nil {
			break
		}
		if served {
			failing.reset()
			lastErr = ""
		}
		switch {
		case err == nil:
			d.log.Info("Connection lost, retrying...", "path", path)
		case err.Error() != lastErr:
			d.log.Warn("Connection lost, retrying...", "path", path, "err", err)
			lastErr = err.Error()
		default:
			d.log.Debug("Connection lost, retrying...", "path", path, "err", err)
		}
		d.sleep(ctx, failing.next())
	}
	return nil
}

func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSocket
}

// servePort opens the port once and serves one session per host
// connection. It returns when the port fails (the error) or ctx ends.
// served reports whether any host sent data.
func (d *device) servePort(ctx context.Context, path string, srv Server) (served bool, err error) {
	p, err := d.open(path)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer p.Close()
	d.log.Info("Connected to virtio-serial device", "path", path)

	// empty paces sessions that end without a byte although the port said
	// a host was there when the wait began: a host that keeps coming and
	// going without a word, or a port whose end of file and hang-up state
	// disagree. Either would otherwise loop hot.
	empty := backoff{min: hostWaitMin, max: hostWaitMax}
	for lost := false; ; lost = true {
		waited, err := d.waitHost(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return served, nil
			}
			return served, fmt.Errorf("wait for host on %s: %w", path, err)
		}
		if lost {
			d.log.Info("Connected to virtio-serial device", "path", path)
		}
		c := &portConn{p: p}
		err = srv.ServeConn(ctx, c)
		p.ClearInterrupt()
		if ctx.Err() != nil {
			return served, nil
		}
		if err != nil && !errors.Is(err, errHostGone) {
			return served, err // the port itself failed: reopen it
		}
		d.log.Info("Connection lost, retrying...", "path", path)
		switch {
		case c.read.Load() > 0:
			served = true
			empty.reset()
		case waited:
			// The host arrived while we waited and left without a
			// word: the next wait blocks until another one comes.
			empty.reset()
		case !d.sleep(ctx, empty.next()):
			return served, nil
		}
	}
}

// waitHost returns once a host has the port open; waited reports whether it
// had to wait for one. Until a host comes the port reads as end of file at
// once and polls as POLLIN|POLLHUP, so it cannot be waited on with poll:
// waitHost sleeps until the port's next host event (SIGIO), with a slow
// timer in case an event is lost. It reads nothing: a request that arrives
// with the host belongs to the next session, and bytes a departed host left
// behind are dropped by the 0xFF a client sends first on each connection.
func (d *device) waitHost(ctx context.Context, p port) (waited bool, err error) {
	events := p.HostEvents()
	// Events on from before the check, so a host that comes after the
	// check raises one; off while a host is served (SIGIO at every
	// request would cost each one a signal delivery).
	watchErr := p.WatchHost(true)
	if watchErr != nil {
		d.log.Debug("Port cannot signal a host's arrival; polling", "err", watchErr)
	}
	defer func() {
		if watchErr == nil {
			if err := p.WatchHost(false); err != nil {
				d.log.Debug("Turning host events off", "err", err)
			}
		}
	}()
	poll := backoff{min: hostWaitMin, max: hostWaitMax}
	for {
		// Events up to now are covered by the check below.
		select {
		case <-events:
		default:
		}
		ok, err := p.HostConnected()
		if err != nil {
			return waited, err
		}
		if ok {
			return waited, nil
		}
		waited = true
		if watchErr != nil {
			if !d.sleep(ctx, poll.next()) {
				return waited, ctx.Err()
			}
			continue
		}
		select {
		case <-events:
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-d.after(hostEventFallback):
		}
	}
}

// portConn is one host session on a port: end of file when the host goes
// away, and a write error instead of a write blocked until the next host.
type portConn struct {
	p       port
	stopped atomic.Bool
	read    atomic.Int64
}

func (c *portConn) Read(b []byte) (int, error) {
	for {
		if c.stopped.Load() {
			return 0, os.ErrDeadlineExceeded
		}
		n, err := c.p.Read(b)
		switch {
		case errors.Is(err, errWouldBlock):
			if err := c.p.WaitRead(); err != nil && !errors.Is(err, errInterrupted) {
				return 0, err
			}
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF // the host disconnected
		default:
			c.read.Add(int64(n))
			return n, nil
		}
	}
}

func (c *portConn) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := c.p.Write(b[written:])
		written += n
		switch {
		case errors.Is(err, errWouldBlock):
			hup, err := c.p.WaitWrite()
			if err != nil {
				return written, err
			}
			if hup {
				return written, errHostGone
			}
		case err != nil:
			return written, err
		}
	}
	return written, nil
}

// SetReadDeadline supports what the server needs: a deadline in the past
// stops reading at once. Later deadlines are not supported.
func (c *portConn) SetReadDeadline(t time.Time) error {
	if t.After(time.Now()) {
		return errors.New("virtio-serial port: read deadlines in the future are not supported")
	}
	c.stopped.Store(true)
	c.p.Interrupt()
	return nil
}

// EOFHangsUp tells the server that end of input means the host left.
func (c *portConn) EOFHangsUp() bool { return true }

// serveSocket dials a unix socket standing in for the port and serves it
// until it closes.
func (d *device) serveSocket(ctx context.Context, path string, srv Server) (served bool, err error) {
	var dialer net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := dialer.DialContext(dctx, "unix", path)
	cancel()
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", path, err)
	}
	defer conn.Close()
	d.log.Info("Connected to virtio-serial device", "path", path, "transport", "unix socket")
	c := &countingConn{Conn: conn}
	err = srv.ServeConn(ctx, c)
	return c.read.Load() > 0, err
}

type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}
