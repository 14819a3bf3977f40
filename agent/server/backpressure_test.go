package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A hostile or stuck host that pipelines requests and never reads the
// replies must not make the agent buffer without bound: once the socket
// buffers, the pending replies (maxPending) and the concurrency slots are
// full, the agent stops reading. When the host reads again, every request
// the agent took gets exactly one whole reply.
func TestHostThatNeverReadsIsBounded(t *testing.T) {
	agent, host := socketPair(t)
	srv := New(testHandlers(), Options{MaxConcurrent: 4, Inline: map[string]bool{"ping": true}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer agent.Close()
		srv.ServeConn(ctx, agent)
	}()
	defer host.Close()

	// 4 MiB of requests: far more than socket buffers plus maxPending.
	const total = 4 << 20
	var req strings.Builder
	n := 0
	for req.Len() < total {
		n++
		// Inline pings: the read loop answers them without a concurrency
		// slot, so only maxPending can stop it.
		fmt.Fprintf(&req, `{"jsonrpc":"2.0","method":"ping","id":%d}`+"\n", n)
	}
	data := req.String()
	host.SetWriteDeadline(time.Now().Add(3 * time.Second))
	sent, err := host.Write([]byte(data))
	if err == nil {
		t.Fatalf("the agent read all %d bytes of requests from a host that reads nothing: its buffering is unbounded", sent)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v", err)
	}
	t.Logf("the agent stopped reading after %d of %d bytes (%.1f%%)", sent, len(data), 100*float64(sent)/float64(len(data)))

	// The host reads again: finish sending and collect every reply.
	host.SetWriteDeadline(time.Time{})
	go host.Write([]byte(data[sent:]))
	seen := make(map[int]bool, n)
	r := bufio.NewReaderSize(host, 1<<16)
	host.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for len(seen) < n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d of %d replies: %v", len(seen), n, err)
		}
		var resp struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(line), &resp); err != nil {
			t.Fatalf("reply is not one whole JSON line: %q: %v", line, err)
		}
		if resp.Error != nil || resp.Result == nil {
			t.Fatalf("reply %q: want a result", line)
		}
		if seen[resp.ID] {
			t.Fatalf("second reply for id %d", resp.ID)
		}
		seen[resp.ID] = true
	}
}
