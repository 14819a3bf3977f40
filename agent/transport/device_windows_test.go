package transport

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestDeviceOverNamedPipe: the agent side opens a named pipe standing in
// for the vioserial port through openPort (CreateFile, overlapped I/O) and
// serves a host that connects, sends, leaves, and comes back.
func TestDeviceOverNamedPipe(t *testing.T) {
	path := fmt.Sprintf(`\\.\pipe\kvmmanager-transport-%d`, time.Now().UnixNano())
	ln, err := ListenPipe(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeDevice(ctx, DeviceOptions{Path: path, Logger: slog.New(slog.NewTextHandler(logs, nil))}, testServer(nil))
	}()
	for round := range 2 {
		type acc struct {
			c   interface{ Close() error }
			err error
		}
		got := make(chan acc, 1)
		var r *bufio.Reader
		go func() {
			c, err := ln.Accept()
			if err == nil {
				r = bufio.NewReader(c)
				if _, err = fmt.Fprint(c, ping); err == nil {
					var line string
					line, err = r.ReadString('\n')
					if err == nil && strings.TrimSpace(line) != pong {
						err = fmt.Errorf("reply %q, want %q", line, pong)
					}
				}
			}
			got <- acc{c, err}
		}()
		select {
		case a := <-got:
			if a.err != nil {
				t.Fatalf("round %d: %v\nlogs:\n%s", round, a.err, logs.String())
			}
			a.c.Close() // the host leaves; the agent reconnects
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no reply within 30 s\nlogs:\n%s", round, logs.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeDevice: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("ServeDevice did not stop\nlogs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "Connected to virtio-serial device") {
		t.Errorf("logs lack the connect line:\n%s", logs.String())
	}
}
