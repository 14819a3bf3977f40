//go:build !windows

package qga

import (
	"net"
	"testing"
)

// netPipe returns the two ends of a unix socket pair (they have read
// deadlines, like the virtio-serial port).
func netPipe(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	b, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
