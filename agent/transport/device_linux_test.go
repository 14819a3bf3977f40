package transport

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

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
