package transport

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFDPort checks the real port code on a socket pair, whose end of file
// and hang-up after the peer closes look like a port whose host left.
func TestFDPort(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	host := fds[1]
	p, err := newFDPort(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, 16)

	if ok, err := p.HostConnected(); !ok || err != nil {
		t.Fatalf("HostConnected = %v, %v with the peer open", ok, err)
	}
	if _, err := p.Read(buf); !errors.Is(err, errWouldBlock) {
		t.Fatalf("Read with nothing sent = %v, want errWouldBlock", err)
	}
	p.Interrupt()
	if err := p.WaitRead(); !errors.Is(err, errInterrupted) {
		t.Fatalf("WaitRead after Interrupt = %v, want errInterrupted", err)
	}
	p.ClearInterrupt()
	unix.Write(host, []byte("hi"))
	if err := p.WaitRead(); err != nil {
		t.Fatalf("WaitRead with data = %v", err)
	}
	if n, err := p.Read(buf); string(buf[:n]) != "hi" || err != nil {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if n, err := p.Write([]byte("ok")); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}

	if n, _ := unix.Read(host, buf); string(buf[:n]) != "ok" {
		t.Fatalf("peer read %q, want ok", buf[:n])
	}
	unix.Close(host)
	if ok, err := p.HostConnected(); ok || err != nil {
		t.Errorf("HostConnected = %v, %v after the peer closed, want false", ok, err)
	}
	for range 3 { // end of file, again and again
		if n, err := p.Read(buf); n != 0 || err != nil {
			t.Errorf("Read after the peer closed = %d, %v; want 0, nil", n, err)
		}
	}
	if err := p.WaitRead(); err != nil {
		t.Errorf("WaitRead after hang-up = %v, want an immediate return", err)
	}
}

func TestOpenFDPortMissing(t *testing.T) {
	_, err := openFDPort(filepath.Join(t.TempDir(), "vport0p1"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("openFDPort = %v, want not-exist", err)
	}
}

// TestFDPortHostEvents checks the SIGIO plumbing on a socket pair, which
// raises SIGIO for an O_ASYNC owner when the peer writes or hangs up, as the
// virtio_console driver does when the host sends, opens or closes the port.
func TestFDPortHostEvents(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	host := fds[1]
	defer func() { unix.Close(host) }()
	p, err := newFDPort(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if owner, err := unix.FcntlInt(uintptr(p.fd), unix.F_GETOWN, 0); owner != os.Getpid() || err != nil {
		t.Fatalf("F_GETOWN = %d, %v; want this process %d", owner, err, os.Getpid())
	}
	async := func() bool {
		t.Helper()
		flags, err := unix.FcntlInt(uintptr(p.fd), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		return flags&unix.O_ASYNC != 0
	}
	// The bound turns a missing signal into a failure instead of a hang.
	event := func(what string) {
		t.Helper()
		select {
		case <-p.HostEvents():
		case <-time.After(10 * time.Second):
			t.Fatalf("no host event after %s", what)
		}
	}

	if async() {
		t.Fatal("O_ASYNC set before WatchHost: every request would raise SIGIO")
	}
	if err := p.WatchHost(true); err != nil {
		t.Fatalf("WatchHost(true) = %v", err)
	}
	if !async() {
		t.Fatal("WatchHost(true) left O_ASYNC clear")
	}
	unix.Write(host, []byte("x"))
	event("the peer wrote")
	unix.Close(host)
	host = -1
	event("the peer hung up")
	if err := p.WatchHost(false); err != nil {
		t.Fatalf("WatchHost(false) = %v", err)
	}
	if async() {
		t.Error("WatchHost(false) left O_ASYNC set")
	}
}
