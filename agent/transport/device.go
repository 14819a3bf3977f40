package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
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
	// 1 s. The same delays pace reads and writes that keep finding the
	// host gone while the port claims one is there, so no loop is hot.
	hostWaitMin = 100 * time.Millisecond
	hostWaitMax = time.Second
	// A port another agent serves is looked at again after this long.
	defaultYieldRecheck = 60 * time.Second
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
	// PortName is the port FindPortNamed looks for when Path is "";
	// "" means the agent's own port (protocol.PortName).
	PortName string
	// Yield, when set, is asked before each attempt to open the port; a
	// non-empty reason (another agent serves it) leaves the port alone:
	// the reason is logged once and asked again after YieldRecheck.
	Yield func() string
	// Optional marks a port the VM may well not have (the agent serves two):
	// while it is missing it is looked for every 30 s (a channel the host
	// hot-plugs), not from 100 ms up, so an idle agent with one port stays
	// idle; its absence is logged at info level, not as a warning.
	Optional bool
	// YieldRecheck is how long to leave the port before asking Yield
	// again, and before retrying a port another process holds (EBUSY);
	// default 60 s.
	YieldRecheck time.Duration
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
	d := &device{opts: opts, log: opts.Logger, open: openPort, sleep: sleep, after: time.After}
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

func (d *device) serve(ctx context.Context, srv Server) error {
	missing := backoff{min: retryMin, max: retryMax}
	if d.opts.Optional {
		missing.min = retryMax
	}
	failing := backoff{min: retryMin, max: retryMax}
	lastErr := ""
	for ctx.Err() == nil {
		path, err := d.locate()
		if err != nil {
			// Say it once, not at every retry.
			if lastErr != "not found" {
				if d.opts.Optional {
					d.log.Info("Virtio-serial device not found", "err", err, "retry", "every "+retryMax.String())
				} else {
					d.log.Warn("Virtio-serial device not found", "err", err, "retry", "with backoff up to "+retryMax.String())
				}
				lastErr = "not found"
			} else {
				d.log.Debug("Virtio-serial device not found", "err", err)
			}
			d.sleep(ctx, missing.next())
			continue
		}
		missing.reset()
		if d.yield(ctx, path, &lastErr) {
			continue
		}

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
		case errors.Is(err, syscall.EBUSY):
			// Another process (qemu-ga) has the port: leave it, and
			// look again slowly.
			if lastErr != "busy" {
				d.log.Warn("Virtio-serial port is held by another process (qemu-ga?); leaving it to it",
					"path", path, "recheck", d.recheck().String())
				lastErr = "busy"
			}
			d.sleep(ctx, d.recheck())
			continue
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

// recheck is how long a port left to another process is left alone.
func (d *device) recheck() time.Duration {
	if d.opts.YieldRecheck > 0 {
		return d.opts.YieldRecheck
	}
	return defaultYieldRecheck
}

// yield reports whether the port is left alone this turn (Yield gave a
// reason); it logs a new reason once and sleeps.
func (d *device) yield(ctx context.Context, path string, lastErr *string) bool {
	if d.opts.Yield == nil {
		return false
	}
	reason := d.opts.Yield()
	if reason == "" {
		return false
	}
	if *lastErr != "yield: "+reason {
		d.log.Warn("Leaving the virtio-serial port to another agent", "path", path, "reason", reason,
			"recheck", d.recheck().String())
		*lastErr = "yield: " + reason
	}
	d.sleep(ctx, d.recheck())
	return true
}

// servePort opens the port once and serves it as one stream for as long as
// it works, whichever hosts come and go (see portConn). It returns when the
// port fails (the error) or ctx ends. served reports whether any host sent
// data.
func (d *device) servePort(ctx context.Context, path string, srv Server) (served bool, err error) {
	p, err := d.open(path)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer p.Close()
	d.log.Info("Connected to virtio-serial device", "path", path)
	c := newPortConn(ctx, d, p, path)
	defer c.stopReading()
	err = srv.ServeConn(ctx, c)
	served = c.read.Load() > 0
	if ctx.Err() != nil {
		return served, nil
	}
	if err == nil {
		err = errors.New("the session on the port ended")
	}
	return served, err
}

// waitHost returns once a host has the port open; waited reports whether it
// had to wait for one. Until a host comes the port reads as end of file at
// once and polls as POLLIN|POLLHUP, so it cannot be waited on with poll:
// waitHost sleeps until the port's next host event (SIGIO), with a slow
// timer in case an event is lost. It reads nothing: a request that arrives
// with the host is read once it returns, and bytes a departed host left
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

// portConn is the stream of an open port, across host connections.
//
// A host's departure cannot end a session: the driver learns of hosts coming
// and going on a control queue it processes in a work queue, and of data on
// the port's own queue at interrupt time, so the first request of a new host
// can be read before the end of file that says the previous host left, and
// its reply may be ready while the port still says no host is there. So
// reads go on after an end of file once a host is back, and a write that
// finds no host waits for the next one instead of failing. Requests of a
// departed host run to completion and their replies go to the next host,
// which tells them apart by id (hosts resynchronise with 0xFF and sync).
type portConn struct {
	d    *device
	p    port
	path string
	// ctx bounds writes waiting for a host; rctx, cancelled by
	// SetReadDeadline, also bounds reads.
	ctx, rctx   context.Context
	cancelReads context.CancelFunc
	read        atomic.Int64
	hostSeen    atomic.Bool // a host was there: its departure is logged

	mu      sync.Mutex
	waiting chan struct{} // closed when the wait for a host in progress ends
	gone    []func()      // OnHostGone's functions
}

// OnHostGone registers fn to run each time the host is seen to leave the
// port (the session outlives hosts; see portConn). The driver may deliver a
// new host's first request before the end of file that says the previous
// host left, so fn may run after that request was read.
func (c *portConn) OnHostGone(fn func()) {
	c.mu.Lock()
	c.gone = append(c.gone, fn)
	c.mu.Unlock()
}

func newPortConn(ctx context.Context, d *device, p port, path string) *portConn {
	rctx, cancel := context.WithCancel(ctx)
	return &portConn{d: d, p: p, path: path, ctx: ctx, rctx: rctx, cancelReads: cancel}
}

func (c *portConn) Read(b []byte) (int, error) {
	pace := backoff{min: hostWaitMin, max: hostWaitMax}
	spun := false
	for {
		if c.rctx.Err() != nil {
			return 0, os.ErrDeadlineExceeded
		}
		n, err := c.p.Read(b)
		switch {
		case errors.Is(err, errWouldBlock):
			if err := c.p.WaitRead(); err != nil && !errors.Is(err, errInterrupted) {
				return 0, err
			}
			continue
		case err != nil:
			return 0, err
		case n > 0:
			c.read.Add(int64(n))
			c.hostSeen.Store(true)
			return n, nil
		}
		// End of file: no host. Go on reading once one is there.
		waited, err := c.awaitHost(c.rctx)
		if err != nil {
			if c.rctx.Err() != nil {
				return 0, os.ErrDeadlineExceeded
			}
			return 0, err
		}
		if err := c.pace(c.rctx, waited, &spun, &pace); err != nil {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (c *portConn) Write(b []byte) (int, error) {
	pace := backoff{min: hostWaitMin, max: hostWaitMax}
	spun := false
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
			if !hup {
				continue
			}
			// No host: the reply is for the next one (it may be the
			// host that sent the request, seen to leave too late).
			waited, err := c.awaitHost(c.ctx)
			if err != nil {
				return written, fmt.Errorf("%w: %w", errHostGone, err)
			}
			if err := c.pace(c.ctx, waited, &spun, &pace); err != nil {
				return written, fmt.Errorf("%w: %w", errHostGone, err)
			}
		case err != nil:
			return written, err
		default:
			spun = false
			pace.reset()
		}
	}
	return written, nil
}

// pace keeps a port whose end of file or hang-up disagrees with its host
// state from looping hot: after a wait for a host that found one at once,
// a second such turn in the same call sleeps with a backoff. A host that
// left and is already back (a fast reconnect) is not delayed.
func (c *portConn) pace(ctx context.Context, waited bool, spun *bool, bo *backoff) error {
	switch {
	case waited:
		*spun = false
		bo.reset()
	case !*spun:
		*spun = true
	case !c.d.sleep(ctx, bo.next()):
		return ctx.Err()
	}
	return nil
}

// awaitHost returns once a host has the port, or ctx ends; waited reports
// whether it had to wait. Read and Write may both find the host gone: one of
// them waits (waitHost owns the port's host events), the other waits for
// that wait to end and then tries again.
func (c *portConn) awaitHost(ctx context.Context) (waited bool, err error) {
	c.mu.Lock()
	if w := c.waiting; w != nil {
		c.mu.Unlock()
		select {
		case <-w:
			return true, nil
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
	w := make(chan struct{})
	c.waiting = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.waiting = nil
		c.mu.Unlock()
		close(w)
	}()

	seen := c.hostSeen.Load()
	if seen {
		c.d.log.Info("Connection lost, retrying...", "path", c.path)
		c.mu.Lock()
		gone := c.gone
		c.mu.Unlock()
		for _, fn := range gone {
			fn()
		}
		// Give the memory the host's requests used back to the system now,
		// in one go: an agent without a host then holds only what it needs,
		// and the runtime's background scavenger, which would otherwise
		// return it bit by bit, has nothing left to do while it waits.
		debug.FreeOSMemory()
	}
	waited, err = c.d.waitHost(ctx, c.p)
	if err == nil {
		if seen {
			c.d.log.Info("Connected to virtio-serial device", "path", c.path)
		}
		c.hostSeen.Store(true)
	}
	return waited, err
}

// SetReadDeadline supports what the server needs: a deadline in the past
// stops reading at once. Later deadlines are not supported.
func (c *portConn) SetReadDeadline(t time.Time) error {
	if t.After(time.Now()) {
		return errors.New("virtio-serial port: read deadlines in the future are not supported")
	}
	c.stopReading()
	return nil
}

func (c *portConn) stopReading() {
	c.cancelReads()
	c.p.Interrupt()
}

// serveSocket dials a unix socket standing in for the port and serves it
// until it closes.
func (d *device) serveSocket(ctx context.Context, path string, srv Server) (served bool, err error) {
	// net.DialUnix, not a net.Dialer: connect(2) on a unix socket never
	// waits (a full backlog is an error at once), and a Dialer links the
	// DNS resolver into the agent, 240 KB of executable that is resident
	// from the start.
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
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
