package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// testHandlers are the methods most tests serve.
func testHandlers() map[string]Handler {
	return map[string]Handler{
		"ping": func(ctx context.Context, params json.RawMessage) (any, error) {
			return protocol.PingResult{Pong: true, Timestamp: 1700000000}, nil
		},
		"echo": func(ctx context.Context, params json.RawMessage) (any, error) {
			if params == nil {
				return "no params", nil
			}
			return params, nil
		},
		"denied": func(ctx context.Context, params json.RawMessage) (any, error) {
			return nil, protocol.Errorf(protocol.CodePermissionDenied, `path "/etc/shadow" is outside allowed_read_paths`)
		},
		"wrapped": func(ctx context.Context, params json.RawMessage) (any, error) {
			return nil, fmt.Errorf("read: %w", protocol.Errorf(protocol.CodeNotFound, "no such file"))
		},
		"plain": func(ctx context.Context, params json.RawMessage) (any, error) {
			return nil, errors.New("disk on fire")
		},
		"panics": func(ctx context.Context, params json.RawMessage) (any, error) {
			panic("boom")
		},
		"unencodable": func(ctx context.Context, params json.RawMessage) (any, error) {
			return func() {}, nil
		},
		"nil": func(ctx context.Context, params json.RawMessage) (any, error) {
			return nil, nil
		},
	}
}

// client drives a server over an in-memory connection.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	done chan error
}

func newClient(t *testing.T, s *Server) *client {
	t.Helper()
	return newClientCtx(t, context.Background(), s)
}

func newClientCtx(t *testing.T, ctx context.Context, s *Server) *client {
	t.Helper()
	a, b := socketPair(t)
	c := &client{t: t, conn: a, r: bufio.NewReaderSize(a, 1<<20), done: make(chan error, 1)}
	go func() { c.done <- s.ServeConn(ctx, b); b.Close() }()
	t.Cleanup(func() { a.Close() })
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) recv() string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("receive: %v (got %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

const pingSentinel = `{"jsonrpc":"2.0","method":"ping","id":"sentinel"}` + "\n"
const pingSentinelReply = `{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":"sentinel"}`

func TestFraming(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // response lines; none means no response at all
	}{
		{"ping number id", `{"jsonrpc":"2.0","method":"ping","id":1}`,
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":1}`}},
		{"string id", `{"jsonrpc":"2.0","method":"ping","id":"a\"b"}`,
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":"a\"b"}`}},
		{"null id", `{"jsonrpc":"2.0","method":"ping","id":null}`,
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":null}`}},
		{"fractional and exponent ids echoed raw", `{"id":-1.5e3,"jsonrpc":"2.0","method":"ping"}`,
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":-1.5e3}`}},
		{"big id echoed raw", `{"jsonrpc":"2.0","method":"ping","id":123456789012345678901234567890}`,
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":123456789012345678901234567890}`}},
		{"whitespace and CRLF", " \t{ \"jsonrpc\" : \"2.0\" , \"method\" : \"ping\" , \"id\" : 7 } \r",
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":7}`}},
		{"escaped member names and method", `{"json\u0072pc":"2\u002e0","method":"p\u0069ng","id":8}`,
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":8}`}},
		{"unknown members ignored", `{"jsonrpc":"2.0","method":"ping","id":9,"x":{"id":[1,{"method":"no"}]}}`,
			[]string{`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":9}`}},
		{"params object passed", `{"jsonrpc":"2.0","method":"echo","params":{"a":[1,"}"]},"id":2}`,
			[]string{`{"jsonrpc":"2.0","result":{"a":[1,"}"]},"id":2}`}},
		{"params array passed", `{"jsonrpc":"2.0","method":"echo","params":[1,2],"id":2}`,
			[]string{`{"jsonrpc":"2.0","result":[1,2],"id":2}`}},
		{"params null is no params", `{"jsonrpc":"2.0","method":"echo","params":null,"id":2}`,
			[]string{`{"jsonrpc":"2.0","result":"no params","id":2}`}},
		{"nil result is null", `{"jsonrpc":"2.0","method":"nil","id":2}`,
			[]string{`{"jsonrpc":"2.0","result":null,"id":2}`}},
		{"notification gets no response", `{"jsonrpc":"2.0","method":"ping"}`, nil},
		{"notification of unknown method gets no response", `{"jsonrpc":"2.0","method":"nope"}`, nil},
		{"blank line ignored", "   ", nil},
		{"parse error", `{"jsonrpc":"2.0","method":"ping","id":1`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: the line is not valid JSON"},"id":null}`}},
		{"garbage", `hello`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: the line is not valid JSON"},"id":null}`}},
		{"scalar is not a request", `42`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: a request must be a JSON object"},"id":null}`}},
		{"missing jsonrpc", `{"method":"ping","id":3}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":3}`}},
		{"wrong jsonrpc", `{"jsonrpc":"1.0","method":"ping","id":3}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":3}`}},
		{"jsonrpc as number", `{"jsonrpc":2.0,"method":"ping","id":3}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":3}`}},
		{"invalid request without id still answered", `{"jsonrpc":"2.0","method":1}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"method\" must be a string"},"id":null}`}},
		{"missing method", `{"jsonrpc":"2.0","id":4}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"method\" must be a string"},"id":4}`}},
		{"object id refused", `{"jsonrpc":"2.0","method":"ping","id":{"a":1}}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: id must be a number, a string or null"},"id":null}`}},
		{"bool id refused", `{"jsonrpc":"2.0","method":"ping","id":true}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: id must be a number, a string or null"},"id":null}`}},
		{"scalar params refused", `{"jsonrpc":"2.0","method":"echo","params":5,"id":5}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"params\" must be an object or an array"},"id":5}`}},
		{"unknown method", `{"jsonrpc":"2.0","method":"format_disk","id":6}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32601,"message":"method \"format_disk\" not found"},"id":6}`}},
		{"protocol error keeps its code", `{"jsonrpc":"2.0","method":"denied","id":6}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32001,"message":"path \"/etc/shadow\" is outside allowed_read_paths"},"id":6}`}},
		{"wrapped protocol error keeps its code", `{"jsonrpc":"2.0","method":"wrapped","id":6}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32002,"message":"no such file"},"id":6}`}},
		{"plain error is internal", `{"jsonrpc":"2.0","method":"plain","id":6}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32603,"message":"disk on fire"},"id":6}`}},
		{"panic is internal", `{"jsonrpc":"2.0","method":"panics","id":6}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32603,"message":"internal error in panics"},"id":6}`}},
		{"unencodable result is internal", `{"jsonrpc":"2.0","method":"unencodable","id":6}`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32603,"message":"encode result: json: unsupported type: func()"},"id":6}`}},
		{"empty batch", `[]`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: empty batch"},"id":null}`}},
		{"batch of notifications gets nothing", `[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","method":"nope"}]`, nil},
		{"mixed batch", `[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":"ping"},1,{"jsonrpc":"2.0","method":"nope","id":"x"},{"method":"ping","id":2}]`,
			[]string{`[{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":1},` +
				`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: a request must be a JSON object"},"id":null},` +
				`{"jsonrpc":"2.0","error":{"code":-32601,"message":"method \"nope\" not found"},"id":"x"},` +
				`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: \"jsonrpc\" must be \"2.0\""},"id":2}]`}},
		{"batch of one", `[{"jsonrpc":"2.0","method":"ping","id":1}]`,
			[]string{`[{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":1}]`}},
		{"invalid batch is a parse error", `[{"jsonrpc":"2.0","method":"ping","id":1},`,
			[]string{`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: the line is not valid JSON"},"id":null}`}},
	}
	s := New(testHandlers(), Options{})
	// All cases share one connection: each must leave it usable for the next.
	c := newClient(t, s)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.send(tc.in + "\n")
			for _, want := range tc.want {
				got := c.recv()
				if got != want {
					t.Errorf("response\n got %s\nwant %s", got, want)
				}
				if !json.Valid([]byte(got)) {
					t.Errorf("response is not valid JSON: %s", got)
				}
			}
			// Replies may come out of order, so the sentinel goes after
			// the case's replies; it is answered first if the case had
			// none, and proves that the connection is still usable.
			c.send(pingSentinel)
			if got := c.recv(); got != pingSentinelReply {
				t.Errorf("after the case: got %s, want the sentinel's reply", got)
			}
		})
	}
}

func TestBatchResponseOrderFollowsRequests(t *testing.T) {
	release := make(chan struct{})
	h := testHandlers()
	h["slow"] = func(ctx context.Context, _ json.RawMessage) (any, error) {
		<-release
		return "slow", nil
	}
	c := newClient(t, New(h, Options{}))
	c.send(`[{"jsonrpc":"2.0","method":"slow","id":1},{"jsonrpc":"2.0","method":"ping","id":2}]` + "\n")
	// The batch answer waits for its slow element while other lines are served.
	c.send(pingSentinel)
	if got := c.recv(); got != pingSentinelReply {
		t.Fatalf("got %s, want the sentinel's reply before the batch", got)
	}
	close(release)
	want := `[{"jsonrpc":"2.0","result":"slow","id":1},{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":2}]`
	if got := c.recv(); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestBatchTooLarge(t *testing.T) {
	c := newClient(t, New(testHandlers(), Options{}))
	elems := make([]string, MaxBatch+1)
	for i := range elems {
		elems[i] = `{"jsonrpc":"2.0","method":"ping","id":1}`
	}
	c.send("[" + strings.Join(elems, ",") + "]\n")
	want := fmt.Sprintf(`{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: a batch may hold at most %d requests"},"id":null}`, MaxBatch)
	if got := c.recv(); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	c.send("[" + strings.Join(elems[:MaxBatch], ",") + "]\n")
	var resps []protocol.Response
	if err := json.Unmarshal([]byte(c.recv()), &resps); err != nil || len(resps) != MaxBatch {
		t.Errorf("full batch: %d responses, %v; want %d", len(resps), err, MaxBatch)
	}
}

func TestResyncByte(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"drops a partial line", `{"jsonrpc":"2.0","meth` + "\xff" + pingSentinel},
		{"alone before a line", "\xff" + pingSentinel},
		{"several in a row", "garbage\xff\xff\xffmore\xff" + pingSentinel},
		{"ends an oversize line", `{"jsonrpc":"2.0","method":"echo","params":["` + strings.Repeat("x", 2*readBufferSize) + "\xff" + pingSentinel},
	}
	s := New(testHandlers(), Options{MaxLineBytes: 1024})
	c := newClient(t, s)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.send(tc.in)
			got := c.recv()
			if strings.Contains(tc.name, "oversize") {
				if !strings.Contains(got, `"code":-32600`) {
					t.Fatalf("got %s, want -32600 for the oversize part", got)
				}
				got = c.recv()
			}
			if got != pingSentinelReply {
				t.Errorf("got %s, want the sentinel's reply", got)
			}
		})
	}
}

func TestOversizeLine(t *testing.T) {
	const limit = 4096
	s := New(testHandlers(), Options{MaxLineBytes: limit})
	c := newClient(t, s)
	want := `{"jsonrpc":"2.0","error":{"code":-32600,"message":"request line longer than 4096 bytes"},"id":null}`
	for _, n := range []int{limit + 1, 3 * readBufferSize, 8 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c.t = t
			go func() {
				// Stream the line in pieces, as a host would.
				piece := strings.Repeat("y", 1000)
				for sent := 0; sent < n; sent += len(piece) {
					io.WriteString(c.conn, piece)
				}
				io.WriteString(c.conn, "\n"+pingSentinel)
			}()
			// Replies may come out of order (PROTOCOL.md): the sentinel's
			// ping is answered on the read loop and can overtake the error
			// (seen on Windows, where a whole small stream arrives in one read).
			got := []string{c.recv(), c.recv()}
			slices.Sort(got)
			wantBoth := []string{want, pingSentinelReply}
			slices.Sort(wantBoth)
			if !slices.Equal(got, wantBoth) {
				t.Errorf("got %q\nwant %q (in any order)", got, wantBoth)
			}
		})
	}
	t.Run("exactly the limit is accepted", func(t *testing.T) {
		c.t = t
		prefix := `{"jsonrpc":"2.0","method":"echo","id":1,"params":["`
		suffix := `"]}`
		pad := strings.Repeat("z", limit-len(prefix)-len(suffix))
		c.send(prefix + pad + suffix + "\n")
		if got := c.recv(); !strings.Contains(got, `"result":["zz`) {
			t.Errorf("got %.100s, want the echo", got)
		}
	})
}

// recorder is a connection whose input is fixed and whose output is logged
// together with events, to check what happened in which order.
type recorder struct {
	in     io.Reader
	mu     sync.Mutex
	events []string
	werr   error
}

func (r *recorder) Read(p []byte) (int, error) { return r.in.Read(p) }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.werr != nil {
		return 0, r.werr
	}
	// Replies are whole lines, written one or several at a time.
	r.events = append(r.events, strings.Split(strings.TrimSuffix(string(p), "\n"), "\n")...)
	return len(p), nil
}

func (r *recorder) event(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

func TestAfterResponse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"after the response line",
			`{"jsonrpc":"2.0","method":"power","id":1}`,
			[]string{`{"jsonrpc":"2.0","result":"ok","id":1}`, "hook 1", "hook 2"}},
		{"after a batch's line",
			`[{"jsonrpc":"2.0","method":"power","id":1},{"jsonrpc":"2.0","method":"ping","id":2}]`,
			[]string{`[{"jsonrpc":"2.0","result":"ok","id":1},{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":2}]`, "hook 1", "hook 2"}},
		{"for a notification too",
			`{"jsonrpc":"2.0","method":"power"}`,
			[]string{"hook 1", "hook 2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{in: strings.NewReader(tc.in + "\n")}
			h := testHandlers()
			h["power"] = func(ctx context.Context, _ json.RawMessage) (any, error) {
				AfterResponse(ctx, func() { rec.event("hook 1") })
				AfterResponse(ctx, func() { rec.event("hook 2") })
				return "ok", nil
			}
			if err := New(h, Options{}).ServeConn(context.Background(), rec); err != nil {
				t.Fatalf("ServeConn: %v", err)
			}
			if got := strings.Join(rec.events, "\n"); got != strings.Join(tc.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
	t.Run("outside a request runs at once", func(t *testing.T) {
		ran := false
		AfterResponse(context.Background(), func() { ran = true })
		if !ran {
			t.Error("fn did not run")
		}
	})
}
