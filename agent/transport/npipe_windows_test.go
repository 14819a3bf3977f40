package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pipePair returns both ends of a fresh named pipe connection.
func pipePair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	path := fmt.Sprintf(`\\.\pipe\kvmmanager-npipe-%d`, time.Now().UnixNano())
	ln, err := ListenPipe(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err = DialPipe(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// within fails the test when f does not return within d.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		return nil
	}
}

// TestPipeReadWhileWriting: a read waiting for the peer does not hold up a
// write on the same connection (the client writes requests while its
// reader waits for replies), and Close ends the waiting read. With
// synchronous handles Windows serialises the two, and Close hung under Wine.
func TestPipeReadWhileWriting(t *testing.T) {
	server, client := pipePair(t)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		_, err := client.Read(buf) // nothing comes until Close
		readErr <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the read start waiting
	msg := []byte("request\n")
	if err := within(t, 10*time.Second, "write while a read waits", func() error {
		_, err := client.Write(msg)
		return err
	}); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(server, got); err != nil || string(got) != string(msg) {
		t.Fatalf("server read %q, %v; want %q", got, err, msg)
	}
	within(t, 10*time.Second, "Close with a read waiting", client.Close)
	select {
	case err := <-readErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("the waiting read ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting read did not end after Close")
	}
}

// TestPipeDeadlines: a read deadline ends a waiting read with
// os.ErrDeadlineExceeded, a past deadline fails at once, clearing it makes
// the connection usable again, and data written before the peer closes is
// still read, followed by io.EOF.
func TestPipeDeadlines(t *testing.T) {
	server, client := pipePair(t)
	buf := make([]byte, 16)
	client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if err := within(t, 10*time.Second, "read with a deadline", func() error {
		_, err := client.Read(buf)
		return err
	}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if _, err := client.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the deadline passed: %v, want os.ErrDeadlineExceeded", err)
	}
	client.SetReadDeadline(time.Time{})
	if _, err := server.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "reply" {
		t.Fatalf("after the server wrote and closed: %q, %v; want \"reply\", nil", got, err)
	}
}
