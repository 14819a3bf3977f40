package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// simPort simulates a virtio-serial port as the guest kernel presents it:
// while no host is connected, reads return 0 at once (again and again), the
// port polls as hung up and writes cannot proceed. While watched, it raises
// a host event (the kernel's SIGIO) when the host comes or goes or sends.
type simPort struct {
	mu          sync.Mutex
	cond        *sync.Cond
	connected   bool
	in          []byte // host to guest
	partial     []byte // guest to host, not yet a whole line
	lines       chan string
	interrupted bool
	closed      bool
	events      chan os.Signal
	watching    bool
	watchErr    error // WatchHost fails: a port that cannot signal
	liar        bool  // reports a host but reads end of file
	eofReads    int   // reads that returned 0 because no host was connected
	hostChecks  int   // HostConnected calls
	// afterCheck, if set, runs after each HostConnected has decided what
	// to report and before the caller sees it.
	afterCheck func(connected bool)
	// onWaitWrite, if set, runs when a write waits for room or a host.
	onWaitWrite func(hup bool)
}

func newSimPort() *simPort {
	p := &simPort{lines: make(chan string, 64), events: make(chan os.Signal, 1)}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *simPort) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case len(p.in) > 0:
		n := copy(b, p.in)
		p.in = p.in[n:]
		return n, nil
	case !p.connected || p.liar:
		p.eofReads++
		return 0, nil
	}
	return 0, errWouldBlock
}

func (p *simPort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.connected {
		return 0, errWouldBlock
	}
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		p.lines <- string(p.partial[:i])
		p.partial = p.partial[i+1:]
	}
	return len(b), nil
}

func (p *simPort) WaitRead() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.in) == 0 && p.connected && !p.liar && !p.interrupted {
		p.cond.Wait()
	}
	if p.interrupted {
		return errInterrupted
	}
	return nil
}

func (p *simPort) WaitWrite() (bool, error) {
	p.mu.Lock()
	hup, hook := !p.connected, p.onWaitWrite
	p.mu.Unlock()
	if hook != nil {
		hook(hup)
	}
	return hup, nil
}

func (p *simPort) HostConnected() (bool, error) {
	p.mu.Lock()
	p.hostChecks++
	ok, hook := p.connected, p.afterCheck
	p.mu.Unlock()
	if hook != nil {
		hook(ok)
	}
	return ok, nil
}

func (p *simPort) WatchHost(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watchErr != nil {
		return p.watchErr
	}
	p.watching = on
	return nil
}

func (p *simPort) HostEvents() <-chan os.Signal { return p.events }

func (p *simPort) Interrupt() {
	p.mu.Lock()
	p.interrupted = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *simPort) ClearInterrupt() {
	p.mu.Lock()
	p.interrupted = false
	p.mu.Unlock()
}

func (p *simPort) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return nil
}

// raise sends a host event if the port is watched, as the kernel does;
// p.mu is held.
func (p *simPort) raise() {
	if !p.watching {
		return
	}
	select {
	case p.events <- os.Interrupt: // any value: the real port sends SIGIO
	default:
	}
}

// Host side.

func (p *simPort) setConnected(c bool) {
	p.mu.Lock()
	p.connected = c
	if !c {
		p.partial = nil
	}
	p.raise()
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *simPort) send(s string) {
	p.mu.Lock()
	p.in = append(p.in, s...)
	p.raise()
	p.cond.Broadcast()
	p.mu.Unlock()
}

// spuriousEvent raises an event with no change (another port's SIGIO).
func (p *simPort) spuriousEvent() {
	p.mu.Lock()
	p.raise()
	p.mu.Unlock()
}

// recvLine returns the next line the agent wrote. The bound is not a speed
// requirement: it turns a lost request into a failure instead of a hang.
func (p *simPort) recvLine(t *testing.T) string {
	t.Helper()
	select {
	case line := <-p.lines:
		return strings.TrimSpace(line)
	case <-time.After(10 * time.Second):
		t.Fatal("no reply from the agent: the request was lost")
		return ""
	}
}

func (p *simPort) counts() (eofReads, hostChecks int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eofReads, p.hostChecks
}

// syncBuffer collects logs from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// hostWait is one wait for a host event: the fallback delay asked for and
// the timer's channel, which the test fires or leaves alone.
type hostWait struct {
	d    time.Duration
	fire chan time.Time
}

// testDevice returns a device whose sleeps and host-event waits are reported
// on the returned channels, so the test sees every turn of its loops. A
// sleep ends when the test receives it; a wait's fallback timer fires only
// when the test sends on it.
func testDevice(ctx context.Context, opts DeviceOptions, logs *syncBuffer, open func(string) (port, error)) (*device, chan time.Duration, chan hostWait) {
	sleeps := make(chan time.Duration)
	// Buffered: a test that does not watch the waits is not held up (the
	// timer is made before the wait's select, even when an event is ready).
	waits := make(chan hostWait, 100)
	d := &device{
		opts: opts,
		log:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		open: open,
		sleep: func(ctx context.Context, dur time.Duration) bool {
			select {
			case sleeps <- dur:
				return true
			case <-ctx.Done():
				return false
			}
		},
		after: func(dur time.Duration) <-chan time.Time {
			w := hostWait{d: dur, fire: make(chan time.Time, 1)}
			select {
			case waits <- w:
			case <-ctx.Done():
			}
			return w.fire
		},
	}
	return d, sleeps, waits
}

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

const ping = `{"jsonrpc":"2.0","method":"ping","id":1}` + "\n"
const pong = `{"jsonrpc":"2.0","result":"pong","id":1}`

// simDevice serves sim until the test ends.
func simDevice(t *testing.T, sim *simPort) (d *device, sleeps chan time.Duration, waits chan hostWait, logs *syncBuffer, stop func()) {
	t.Helper()
	dir := t.TempDir()
	portPath := filepath.Join(dir, "vport0p1")
	touch(t, portPath)
	logs = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	opens := 0
	d, sleeps, waits = testDevice(ctx, DeviceOptions{Path: portPath}, logs, func(string) (port, error) {
		opens++
		return sim, nil
	})
	done := make(chan error, 1)
	go func() { done <- d.serve(ctx, testServer(nil)) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if opens != 1 {
			t.Errorf("port opened %d times, want once (a second open gets EBUSY)", opens)
		}
		if !sim.closed {
			t.Error("port not closed at shutdown")
		}
	}
	t.Cleanup(stop)
	return d, sleeps, waits, logs, stop
}

func TestDeviceWaitsForHostEvents(t *testing.T) {
	sim := newSimPort()
	_, _, waits, logs, stop := simDevice(t, sim)

	// No host: the agent checks once, then waits for a host event with a
	// slow fallback timer, reading nothing.
	w := <-waits
	if w.d != hostEventFallback {
		t.Errorf("wait for the host with a %v fallback, want %v", w.d, hostEventFallback)
	}
	// The fallback fires: one more check, and back to waiting.
	w.fire <- time.Time{}
	<-waits
	// An event that changes nothing (SIGIO of another descriptor): the same.
	sim.spuriousEvent()
	<-waits
	if eofReads, checks := sim.counts(); eofReads != 1 || checks != 3 {
		t.Errorf("while no host: %d reads at end of file and %d checks over 2 wake-ups, want 1 and 3", eofReads, checks)
	}

	// A host connects: its event ends the wait and it is served.
	sim.setConnected(true)
	sim.send(ping)
	if got := sim.recvLine(t); got != pong {
		t.Errorf("first host: got %s, want %s", got, pong)
	}

	// It goes away: the session ends at the port's end of file, and the
	// agent waits for the next host on the same open port, without delay.
	sim.setConnected(false)
	<-waits
	sim.setConnected(true)
	sim.send(ping)
	if got := sim.recvLine(t); got != pong {
		t.Errorf("second host: got %s, want %s", got, pong)
	}
	stop()
	if eofReads, _ := sim.counts(); eofReads != 2 {
		t.Errorf("%d reads at end of file at start and for one host leaving, want 2", eofReads)
	}
	out := logs.String()
	for msg, want := range map[string]int{"Connected to virtio-serial device": 2, "Connection lost, retrying...": 1} {
		if got := strings.Count(out, msg); got != want {
			t.Errorf("log has %q %d times, want %d:\n%s", msg, got, want, out)
		}
	}
}

// TestDeviceRequestAtConnectIsServed connects a host and sends its first
// request just after the agent found no host and before it waits: the
// request must be answered, not taken for what a departed host left.
func TestDeviceRequestAtConnectIsServed(t *testing.T) {
	tests := []struct {
		name     string
		leftover string // bytes a departed host left in the port
	}{
		{"clean port", ""},
		{"fragment from the last host", `{"jsonrpc":"2.0","meth`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := newSimPort()
			sim.in = []byte(tt.leftover)
			var once sync.Once
			sim.afterCheck = func(connected bool) {
				if !connected {
					once.Do(func() {
						sim.setConnected(true)
						sim.send("\xff" + ping) // a client starts with 0xFF
					})
				}
			}
			simDevice(t, sim)
			if got := sim.recvLine(t); got != pong {
				t.Errorf("got %s, want %s", got, pong)
			}
		})
	}
}

// TestDevicePollsWithoutHostEvents: a port that cannot signal is polled with
// a backoff, never in a hot loop, and a host that comes is still served.
func TestDevicePollsWithoutHostEvents(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	sim := newSimPort()
	sim.watchErr = errors.New("fasync not supported")
	checks := 0
	sim.afterCheck = func(bool) {
		// The host comes after the check that starts the last poll.
		if checks++; checks == len(want) {
			sim.setConnected(true)
		}
	}
	_, sleeps, _, _, _ := simDevice(t, sim)
	for i, w := range want {
		if got := <-sleeps; got != w {
			t.Errorf("poll %d for the host after %v, want %v", i, got, w)
		}
	}
	sim.send(ping)
	if got := sim.recvLine(t); got != pong {
		t.Errorf("got %s, want %s", got, pong)
	}
	if eofReads, checks := sim.counts(); eofReads != 1 || checks != len(want)+1 {
		t.Errorf("%d reads at end of file and %d checks over %d polls, want 1 and %d", eofReads, checks, len(want), len(want)+1)
	}
}

// TestDeviceHostGoneWithoutData covers ends of file with no data between.
func TestDeviceHostGoneWithoutData(t *testing.T) {
	t.Run("host comes and goes without a word", func(t *testing.T) {
		// The agent had waited for each host: no delay after it leaves
		// (a sleep would block this test's loop and lose the ping), and
		// the next wait blocks until the next host.
		const visits = 3
		sim := newSimPort()
		left := 0
		sim.afterCheck = func(connected bool) {
			if connected && left < visits {
				left++
				sim.setConnected(false) // gone before the session reads
			}
		}
		_, _, waits, _, _ := simDevice(t, sim)
		for range visits {
			<-waits
			sim.setConnected(true)
		}
		<-waits
		sim.setConnected(true)
		sim.send(ping)
		if got := sim.recvLine(t); got != pong {
			t.Errorf("got %s, want %s", got, pong)
		}
		if eofReads, _ := sim.counts(); eofReads != visits+1 {
			t.Errorf("%d reads at end of file for %d visits, want one each and one at start", eofReads, visits)
		}
	})
	t.Run("port claims a host but reads end of file", func(t *testing.T) {
		// The wait for a host returns at once and the next read is at end
		// of file again: after one free turn, reads are paced by a
		// backoff instead of looping hot.
		sim := newSimPort()
		sim.connected, sim.liar = true, true
		_, sleeps, _, _, _ := simDevice(t, sim)
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
		for i, w := range want {
			if got := <-sleeps; got != w {
				t.Errorf("end of file %d: next read after %v, want %v", i, got, w)
			}
		}
		if eofReads, _ := sim.counts(); eofReads > len(want)+2 { // one free turn, one after the last sleep
			t.Errorf("%d reads at end of file over %d paced turns: the agent spins", eofReads, len(want))
		}
	})
}

func TestDeviceNotFound(t *testing.T) {
	tests := []struct {
		name     string
		optional bool
		want     string // the first 12 retry delays
		level    string // the one log line's level
	}{
		{"the agent's port", false, "[100ms 200ms 400ms 800ms 1.6s 3.2s 6.4s 12.8s 25.6s 30s 30s 30s]", "WARN"},
		// A VM with only one of the two ports: the missing one costs one
		// look every 30 s, so the idle agent stays idle.
		{"optional port", true, "[30s 30s 30s 30s 30s 30s 30s 30s 30s 30s 30s 30s]", "INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			d, sleeps, _ := testDevice(ctx, DeviceOptions{DevRoot: t.TempDir(), SysRoot: t.TempDir(), Optional: tt.optional}, logs, func(string) (port, error) {
				t.Error("open called without a port")
				return nil, errors.New("no")
			})
			done := make(chan error, 1)
			go func() { done <- d.serve(ctx, testServer(nil)) }()
			var got []time.Duration
			for range 12 {
				got = append(got, <-sleeps)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v, want nil (never give up)", err)
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("retry delays %v, want %s", got, tt.want)
			}
			out := logs.String()
			if n := strings.Count(out, "level="+tt.level+" msg=\"Virtio-serial device not found\""); n != 1 {
				t.Errorf("logged %d times at %s, want once:\n%s", n, tt.level, out)
			}
		})
	}
}

func TestPortConnWriteWaitsForHost(t *testing.T) {
	tests := []struct {
		name   string
		cancel bool // the agent stops while no host is there
	}{
		{"a host comes", false},
		{"the agent stops", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := newSimPort()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			d, _, waits := testDevice(ctx, DeviceOptions{}, &syncBuffer{}, nil)
			c := newPortConn(ctx, d, sim, "vport0p1")
			done := make(chan error, 1)
			go func() {
				_, err := c.Write([]byte("reply\n"))
				done <- err
			}()
			<-waits // no host: the write waits for one
			if tt.cancel {
				cancel()
				if err := <-done; !errors.Is(err, errHostGone) || !errors.Is(err, context.Canceled) {
					t.Errorf("Write = %v, want errHostGone and context.Canceled", err)
				}
				return
			}
			sim.setConnected(true)
			if err := <-done; err != nil {
				t.Errorf("Write = %v", err)
			}
			if got := sim.recvLine(t); got != "reply" {
				t.Errorf("host got %q, want reply", got)
			}
		})
	}
}

// TestDeviceReplyAfterHostSeenToLeave: the guest can read a new host's
// request before it learns that the previous host left (the driver handles
// data at interrupt time and host changes later, in a work queue). The
// request must still run and its reply reach the host once it is seen back.
func TestDeviceReplyAfterHostSeenToLeave(t *testing.T) {
	release := map[string]chan struct{}{"k": make(chan struct{})}
	sim := newSimPort()
	sim.connected = true
	writerWaits := make(chan struct{}, 1)
	sim.onWaitWrite = func(hup bool) {
		if hup {
			writerWaits <- struct{}{}
		}
	}
	dir := t.TempDir()
	portPath := filepath.Join(dir, "vport0p1")
	touch(t, portPath)
	ctx, cancel := context.WithCancel(context.Background())
	d, _, waits := testDevice(ctx, DeviceOptions{Path: portPath}, &syncBuffer{}, func(string) (port, error) { return sim, nil })
	done := make(chan error, 1)
	go func() { done <- d.serve(ctx, testServer(release)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	sim.send(`{"jsonrpc":"2.0","method":"block","params":{"key":"k"},"id":7}` + "\n")
	sim.setConnected(false) // seen after the request: the agent waits for a host
	<-waits
	close(release["k"]) // the reply is ready while no host is there
	<-writerWaits       // and waits for the host the reader waits for
	sim.setConnected(true)
	if got, want := sim.recvLine(t), `{"jsonrpc":"2.0","result":"released","id":7}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDeviceUnixSocketClient(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the unix socket stand-in is Linux's; on Windows a named pipe stands in (device_windows_test.go)")
	}
	// A host that listens on a socket (as QEMU's chardev does) and the agent
	// started with --device pointing at it: the agent dials and redials.
	path := filepath.Join(t.TempDir(), "host.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	d, sleeps, _ := testDevice(ctx, DeviceOptions{Path: path}, logs, nil)
	done := make(chan error, 1)
	go func() { done <- d.serve(ctx, testServer(nil)) }()

	for i := range 2 {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := call(t, c, bufio.NewReader(c), strings.TrimSpace(ping)); got != pong {
			t.Errorf("connection %d: got %s, want %s", i, got, pong)
		}
		c.Close()
		if got := <-sleeps; got != 100*time.Millisecond {
			t.Errorf("redial after %v, want 100ms after a served connection", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, "Connected to virtio-serial device"); n < 2 {
		t.Errorf("logged Connected %d times, want 2:\n%s", n, out)
	}
	if n := strings.Count(out, "Connection lost, retrying..."); n < 2 {
		t.Errorf("logged Connection lost %d times, want 2:\n%s", n, out)
	}
}
