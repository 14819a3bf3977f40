package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// simPort simulates a virtio-serial port as the guest kernel presents it:
// while no host is connected, reads return 0 at once (again and again), the
// port polls as hung up and writes cannot proceed.
type simPort struct {
	mu          sync.Mutex
	cond        *sync.Cond
	connected   bool
	in          []byte       // host to guest
	out         bytes.Buffer // guest to host
	interrupted bool
	eofReads    int // reads that returned 0 because no host was connected
	closed      bool
}

func newSimPort() *simPort {
	p := &simPort{}
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
	case !p.connected:
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
	p.out.Write(b)
	p.cond.Broadcast()
	return len(b), nil
}

func (p *simPort) WaitRead() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.in) == 0 && p.connected && !p.interrupted {
		p.cond.Wait()
	}
	if p.interrupted {
		return errInterrupted
	}
	return nil
}

func (p *simPort) WaitWrite() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.connected, nil
}

func (p *simPort) HostConnected() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connected, nil
}

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

// Host side.

func (p *simPort) setConnected(c bool) {
	p.mu.Lock()
	p.connected = c
	if !c {
		p.out.Reset()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *simPort) send(s string) {
	p.mu.Lock()
	p.in = append(p.in, s...)
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *simPort) recvLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !bytes.Contains(p.out.Bytes(), []byte("\n")) {
		p.cond.Wait()
	}
	line, _ := p.out.ReadString('\n')
	return strings.TrimSpace(line)
}

func (p *simPort) eofReadCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eofReads
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

// testDevice returns a device whose sleeps are reported on the returned
// channel and end when the test receives them, so the test paces the loop.
func testDevice(opts DeviceOptions, logs *syncBuffer, open func(string) (port, error)) (*device, chan time.Duration) {
	sleeps := make(chan time.Duration)
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
	}
	return d, sleeps
}

const ping = `{"jsonrpc":"2.0","method":"ping","id":1}` + "\n"
const pong = `{"jsonrpc":"2.0","result":"pong","id":1}`

func TestDeviceWaitsForHostWithoutSpinning(t *testing.T) {
	dir := t.TempDir()
	portPath := filepath.Join(dir, "vport0p1")
	touch(t, portPath)
	sim := newSimPort()
	opens := 0
	logs := &syncBuffer{}
	d, sleeps := testDevice(DeviceOptions{Path: portPath}, logs, func(string) (port, error) {
		opens++
		return sim, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.serve(ctx, testServer(nil)) }()

	// No host: the agent looks again after growing delays and reads the
	// port's end of file at most once per look (never a hot loop).
	wantDelays := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second}
	for i, want := range wantDelays {
		if got := <-sleeps; got != want {
			t.Errorf("wait %d for the host: %v, want %v", i, got, want)
		}
	}
	if n := sim.eofReadCount(); n > len(wantDelays)+1 {
		t.Errorf("%d reads at end of file over %d waits: the agent spins", n, len(wantDelays))
	}

	// A host connects: it is served.
	sim.setConnected(true)
	<-sleeps // the wait that was in progress ends
	sim.send(ping)
	if got := sim.recvLine(); got != pong {
		t.Errorf("first host: got %s, want %s", got, pong)
	}

	// It goes away, a new one comes: same open port, served again.
	sim.setConnected(false)
	if got := <-sleeps; got != 100*time.Millisecond {
		t.Errorf("after the host left: wait %v, want 100ms", got)
	}
	sim.setConnected(true)
	<-sleeps
	sim.send(ping)
	if got := sim.recvLine(); got != pong {
		t.Errorf("second host: got %s, want %s", got, pong)
	}

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
	out := logs.String()
	for msg, want := range map[string]int{"Connected to virtio-serial device": 2, "Connection lost, retrying...": 1} {
		if got := strings.Count(out, msg); got != want {
			t.Errorf("log has %q %d times, want %d:\n%s", msg, got, want, out)
		}
	}
}

func TestDeviceNotFound(t *testing.T) {
	logs := &syncBuffer{}
	d, sleeps := testDevice(DeviceOptions{DevRoot: t.TempDir(), SysRoot: t.TempDir()}, logs, func(string) (port, error) {
		t.Error("open called without a port")
		return nil, errors.New("no")
	})
	ctx, cancel := context.WithCancel(context.Background())
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
	want := "[100ms 200ms 400ms 800ms 1.6s 3.2s 6.4s 12.8s 25.6s 30s 30s 30s]"
	if fmt.Sprint(got) != want {
		t.Errorf("retry delays %v, want %s", got, want)
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN msg=\"Virtio-serial device not found\""); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, out)
	}
}

func TestPortConnWriteFailsWhenHostGone(t *testing.T) {
	sim := newSimPort()
	c := &portConn{p: sim}
	if _, err := c.Write([]byte("reply\n")); !errors.Is(err, errHostGone) {
		t.Errorf("Write = %v, want errHostGone", err)
	}
	sim.setConnected(true)
	if n, err := c.Write([]byte("reply\n")); n != 6 || err != nil {
		t.Errorf("Write = %d, %v; want 6, nil", n, err)
	}
}

func TestDeviceUnixSocketClient(t *testing.T) {
	// A host that listens on a socket (as QEMU's chardev does) and the agent
	// started with --device pointing at it: the agent dials and redials.
	path := filepath.Join(t.TempDir(), "host.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs := &syncBuffer{}
	d, sleeps := testDevice(DeviceOptions{Path: path}, logs, nil)
	ctx, cancel := context.WithCancel(context.Background())
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
