package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// realServer serves handlers with the agent's own server package on a unix
// socket, so the client's framing (0xFF prefixes, resync) meets the real
// line reader. It returns the socket path and a function that drops every
// connection.
func realServer(t *testing.T, handlers map[string]server.Handler) (string, func()) {
	t.Helper()
	handlers[protocol.MethodSync] = func(_ context.Context, params json.RawMessage) (any, error) {
		var p protocol.SyncParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, "sync params: %v", err)
		}
		return p.ID, nil
	}
	srv := server.New(handlers, server.Options{})
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Go(func() {
				srv.ServeConn(ctx, nc) //nolint:errcheck // ends with the test
				nc.Close()
			})
		}
	})
	drop := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	t.Cleanup(func() {
		ln.Close()
		cancel()
		drop()
		wg.Wait()
	})
	return path, drop
}

func TestAgainstAgentServer(t *testing.T) {
	release := make(chan struct{})
	var calls sync.Mutex
	n := 0
	path, drop := realServer(t, map[string]server.Handler{
		protocol.MethodPing: func(ctx context.Context, _ json.RawMessage) (any, error) {
			calls.Lock()
			n++
			first := n == 1
			calls.Unlock()
			if first { // the first ping is late: its reply comes after the caller gave up
				select {
				case <-release:
				case <-ctx.Done():
				}
				return protocol.PingResult{Pong: true, Timestamp: 1}, nil
			}
			return protocol.PingResult{Pong: true, Timestamp: 2}, nil
		},
	})
	c, err := client.Dial(context.Background(), path, client.WithResyncInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = c.Ping(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first ping: %v, want DeadlineExceeded", err)
	}
	close(release) // the late reply now races the resync
	for i := range 5 {
		r, err := c.Ping(context.Background())
		if err != nil || r.Timestamp != 2 {
			t.Fatalf("ping %d after the timeout = %+v, %v; want timestamp 2", i, r, err)
		}
	}

	drop()
	for {
		// The first ping may be sent before the client sees the close.
		_, err := c.Ping(context.Background())
		if err == nil {
			break
		}
		if !errors.Is(err, client.ErrDisconnected) {
			t.Fatalf("ping after the server dropped us: %v", err)
		}
	}
	if err := c.Call(context.Background(), "no_such_method", nil, nil); err == nil {
		t.Fatal("unknown method succeeded")
	} else {
		var perr *protocol.Error
		if !errors.As(err, &perr) || perr.Code != protocol.CodeMethodNotFound {
			t.Fatalf("unknown method: %v, want -32601", err)
		}
	}
}
