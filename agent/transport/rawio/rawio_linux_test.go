package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// unixPair returns both ends of a connected unix stream socket.
func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestNewOnlyForNonBlockingDescriptors(t *testing.T) {
	a, _ := unixPair(t)
	f, err := os.Open("/dev/null") // a blocking descriptor: a raw read would hold the thread
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name string
		rw   io.ReadWriter
		want bool
	}{
		{"unix socket", a, true},
		{"blocking file", f, false},
		{"no descriptor", &bytes.Buffer{}, false},
	} {
		if got := New(tc.rw) != nil; got != tc.want {
			t.Errorf("%s: New gave a raw reader: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRoundTripWaitsInThePoller(t *testing.T) {
	a, b := unixPair(t)
	raw := New(b)
	// A read before anything was sent waits (EAGAIN goes to the poller).
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := raw.Read(buf)
		if err != nil {
			t.Errorf("read: %v", err)
		}
		got <- buf[:n]
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := a.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if g := <-got; string(g) != "ping\n" {
		t.Fatalf("read %q, want %q", g, "ping\n")
	}

	// A write larger than the socket buffer completes once the peer reads.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(a, int64(len(big))))
		read <- b
	}()
	if n, err := raw.Write(big); n != len(big) || err != nil {
		t.Fatalf("write: %d, %v; want %d, nil", n, err, len(big))
	}
	if r := <-read; !bytes.Equal(r, big) {
		t.Fatalf("the peer read %d bytes, not the %d written", len(r), len(big))
	}

	// Deadlines set on the connection hold for the raw reads.
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := raw.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	b.SetReadDeadline(time.Time{})

	// The peer's close is the end of input.
	a.Close()
	if n, err := raw.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}

func TestTryWriteNeverWaits(t *testing.T) {
	a, b := unixPair(t)
	raw := New(b).(interface {
		TryWrite([]byte) (int, error)
	})
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	total := 0
	for i := 0; ; i++ {
		if i > 10000 {
			t.Fatal("the socket never filled")
		}
		n, err := raw.TryWrite(chunk)
		if err != nil {
			t.Fatalf("try write: %v", err)
		}
		total += n
		if n == 0 {
			break // full: it returned instead of waiting
		}
	}
	got, err := io.ReadFull(a, make([]byte, total))
	if err != nil || got != total {
		t.Fatalf("the peer read %d of %d bytes: %v", got, total, err)
	}
	if n, err := raw.TryWrite([]byte("more")); n != 4 || err != nil {
		t.Fatalf("try write after the peer read: %d, %v; want 4, nil", n, err)
	}
	a.Close()
	b.Close()
	if _, err := raw.TryWrite([]byte("x")); err == nil {
		t.Fatal("try write on a closed connection succeeded")
	}
}
