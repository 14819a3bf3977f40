package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/server"
)

// testServer answers ping, and block, which waits until its key is released.
func testServer(release map[string]chan struct{}) *server.Server {
	return server.New(map[string]server.Handler{
		"ping": func(ctx context.Context, _ json.RawMessage) (any, error) { return "pong", nil },
		"block": func(ctx context.Context, params json.RawMessage) (any, error) {
			var p struct{ Key string }
			json.Unmarshal(params, &p)
			select {
			case <-release[p.Key]:
				return "released", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}, server.Options{})
}

func call(t *testing.T, c net.Conn, r *bufio.Reader, req string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c, req); err != nil {
		t.Fatalf("send: %v", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return strings.TrimSpace(line)
}
