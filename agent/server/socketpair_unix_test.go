//go:build unix

package server

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// socketPair returns the two ends of a connected unix stream socket pair:
// unlike net.Pipe it buffers, as the agent's real transports do.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatalf("socketpair: %v", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}
