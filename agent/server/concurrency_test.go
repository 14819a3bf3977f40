package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// gate lets tests hold handlers until released, by key.
type gate struct {
	mu      sync.Mutex
	ch      map[string]chan struct{}
	started chan string
	running atomic.Int32
	max     atomic.Int32
}

func newGate() *gate {
	return &gate{ch: map[string]chan struct{}{}, started: make(chan string, 100)}
}

func (g *gate) wait(key string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch[key] == nil {
		g.ch[key] = make(chan struct{})
	}
	return g.ch[key]
}

func (g *gate) release(key string) { close(g.wait(key)) }

// handler blocks until its params' "key" is released (or ctx ends).
func (g *gate) handler(ctx context.Context, params json.RawMessage) (any, error) {
	var p struct{ Key string }
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidParams, "%v", err)
	}
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			break
		}
	}
	g.started <- p.Key
	select {
	case <-g.wait(p.Key):
		return "released " + p.Key, nil
	case <-ctx.Done():
		return nil, protocol.Errorf(protocol.CodeTimeout, "cancelled: %v", context.Cause(ctx))
	}
}

func blockReq(id int, key string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","method":"block","params":{"key":%q},"id":%d}`+"\n", key, id)
}

func TestPipelinedRequestsAnsweredOutOfOrder(t *testing.T) {
	g := newGate()
	h := testHandlers()
	h["block"] = g.handler
	c := newClient(t, New(h, Options{}))

	// A long request (think: a 30 s exec_command) does not hold up a ping
	// sent after it on the same connection.
	c.send(blockReq(1, "exec") + `{"jsonrpc":"2.0","method":"ping","id":2}` + "\n")
	<-g.started
	if got, want := c.recv(), `{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":2}`; got != want {
		t.Fatalf("first reply %s, want the ping's %s", got, want)
	}
	g.release("exec")
	if got, want := c.recv(), `{"jsonrpc":"2.0","result":"released exec","id":1}`; got != want {
		t.Fatalf("second reply %s, want %s", got, want)
	}
}

func TestConcurrencyBound(t *testing.T) {
	const bound = 3
	g := newGate()
	h := testHandlers()
	h["block"] = g.handler
	c := newClient(t, New(h, Options{MaxConcurrent: bound}))

	for i := 1; i <= 5; i++ {
		c.send(blockReq(i, fmt.Sprint(i)))
	}
	started := map[string]bool{}
	for range bound {
		started[<-g.started] = true
	}
	// Free one slot at a time: each release lets exactly one more start
	// while the others stay held.
	for _, key := range []string{"1", "4"} {
		g.release(key)
		if got := c.recv(); !strings.Contains(got, "released "+key) {
			t.Fatalf("got %s, want the reply to %s", got, key)
		}
		started[<-g.started] = true
	}
	for _, key := range []string{"2", "3", "5"} {
		g.release(key)
		c.recv()
	}
	if len(started) != 5 {
		t.Errorf("started %v, want all 5", started)
	}
	if got := g.max.Load(); got != bound {
		t.Errorf("at most %d requests ran at once, want %d", got, bound)
	}
}

func TestParseErrorKeepsConnection(t *testing.T) {
	c := newClient(t, New(testHandlers(), Options{}))
	for i := range 3 {
		c.send("{not json\n")
		if got := c.recv(); !strings.Contains(got, `"code":-32700`) || !strings.HasSuffix(got, `"id":null}`) {
			t.Fatalf("round %d: got %s, want a parse error with id null", i, got)
		}
		c.send(pingSentinel)
		if got := c.recv(); got != pingSentinelReply {
			t.Fatalf("round %d: got %s, want the sentinel's reply", i, got)
		}
	}
}

func TestGracefulDrain(t *testing.T) {
	g := newGate()
	h := testHandlers()
	h["block"] = g.handler
	ctx, cancel := context.WithCancel(context.Background())
	c := newClientCtx(t, ctx, New(h, Options{}))

	c.send(blockReq(1, "inflight"))
	<-g.started
	cancel() // SIGTERM
	// Reading has stopped: a request sent now is not served, but the one
	// in flight finishes and its reply is written before ServeConn returns.
	c.send(`{"jsonrpc":"2.0","method":"ping","id":2}` + "\n")
	g.release("inflight")
	if got, want := c.recv(), `{"jsonrpc":"2.0","result":"released inflight","id":1}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if err := <-c.done; err != nil {
		t.Errorf("ServeConn: %v, want nil after a complete drain", err)
	}
	c.conn.SetReadDeadline(pastDeadline)
	if line, err := c.r.ReadString('\n'); line != "" {
		t.Errorf("got %q (%v) after the drain, want nothing", line, err)
	}
}

func TestDrainTimeoutCancelsHandlers(t *testing.T) {
	g := newGate()
	h := testHandlers()
	h["block"] = g.handler
	ctx, cancel := context.WithCancel(context.Background())
	c := newClientCtx(t, ctx, New(h, Options{DrainTimeout: 1})) // 1ns: expire at once

	c.send(blockReq(1, "never"))
	<-g.started
	cancel()
	// The handler sees its context cancelled and answers.
	if got := c.recv(); !strings.Contains(got, `"code":-32003`) || !strings.Contains(got, `"id":1`) {
		t.Errorf("got %s, want the cancelled handler's error", got)
	}
	if err := <-c.done; err == nil || !strings.Contains(err.Error(), "drain") {
		t.Errorf("ServeConn: %v, want a drain error", err)
	}
}

// A socket peer may half-close and still read its replies: end of input
// lets the running requests finish and writes their replies.
func TestEndOfInputWaitsForReplies(t *testing.T) {
	cancelled := make(chan bool, 1)
	h := map[string]Handler{"wait": func(ctx context.Context, _ json.RawMessage) (any, error) {
		cancelled <- ctx.Err() != nil
		return "done", nil
	}}
	rec := &recorder{in: strings.NewReader(`{"jsonrpc":"2.0","method":"wait","id":1}`)}
	if err := New(h, Options{}).ServeConn(context.Background(), rec); err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
	if <-cancelled {
		t.Error("handler context cancelled at end of input")
	}
	if want := []string{`{"jsonrpc":"2.0","result":"done","id":1}`}; !slices.Equal(rec.events, want) {
		t.Errorf("written %q, want %q", rec.events, want)
	}
}

func TestWriteErrorEndsConnection(t *testing.T) {
	g := newGate()
	h := testHandlers()
	h["block"] = g.handler
	pr, pw := io.Pipe()
	rec := &recorder{in: pr, werr: errors.New("host gone")}
	done := make(chan error, 1)
	go func() { done <- New(h, Options{}).ServeConn(context.Background(), rec) }()

	io.WriteString(pw, blockReq(1, "held")+`{"jsonrpc":"2.0","method":"ping","id":2}`+"\n")
	<-g.started
	// The ping's reply fails to write: the connection is broken, so the
	// held request is cancelled and ServeConn reports the write error.
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "host gone") {
		t.Errorf("ServeConn: %v, want the write error", err)
	}
	pw.Close()
}

var pastDeadline = time.Unix(1, 0)
