package server

import (
	"net"
	"testing"
)

// socketPair returns the two ends of a loopback TCP connection: like the
// unix socket pair of the other systems it buffers, as the agent's real
// transports do.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("socketpair: accept failed")
	}
	// Small socket buffers, as a unix socket pair has: loopback TCP
	// buffers grow to megabytes, which tests of back pressure would have
	// to fill first.
	for _, c := range []net.Conn{a, b} {
		tc := c.(*net.TCPConn)
		tc.SetReadBuffer(64 << 10)
		tc.SetWriteBuffer(64 << 10)
	}
	return a, b
}
