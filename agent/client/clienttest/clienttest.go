// Package clienttest runs a fake kvmmanager agent on a unix socket, for
// tests of host-side code (the client package, kvmmanager-agentctl).
//
// A Server is used in one of two ways: scripted, where the test accepts a
// connection and reads requests and writes replies itself (to control order
// and timing exactly), or serving, where Serve answers every request with a
// Handler, concurrently, like the real agent. Both honour the framing of
// protocol 1.0: a 0xFF byte discards the partial line.
package clienttest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// ioTimeout bounds every scripted read and accept so that a broken client
// fails the test instead of hanging it.
const ioTimeout = 20 * time.Second

// Server is a fake agent listening on a unix socket.
type Server struct {
	// Path is the socket path to dial.
	Path string

	t     testing.TB
	ln    *net.UnixListener
	mu    sync.Mutex
	conns []*Conn
	wg    sync.WaitGroup
}

// NewServer listens on a socket in a temporary directory; it is closed,
// with its connections, when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	s := &Server{Path: path, t: t, ln: ln}
	t.Cleanup(s.Close)
	return s
}

// Close stops listening, closes every connection and waits for Serve's
// goroutines.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Accept waits for the next connection.
func (s *Server) Accept() *Conn {
	s.t.Helper()
	if err := s.ln.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		s.t.Fatalf("set accept deadline: %v", err)
	}
	nc, err := s.ln.Accept()
	if err != nil {
		s.t.Fatalf("accept on %s: %v", s.Path, err)
	}
	return s.track(nc)
}

func (s *Server) track(nc net.Conn) *Conn {
	c := &Conn{t: s.t, nc: nc, r: bufio.NewReader(nc)}
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return c
}

// Handler answers one request: a result to encode, or an error
// (*protocol.Error keeps its code; any other error becomes -32603).
type Handler func(ctx context.Context, method string, params json.RawMessage) (any, error)

// Serve answers every request on every connection with h, each request in
// its own goroutine, so replies may go out in any order. sync is answered
// by the server itself, as the real agent does. Serve returns at once.
func (s *Server) Serve(h Handler) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := s.ln.Accept()
			if err != nil {
				return
			}
			c := s.track(nc)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c.serve(h)
			}()
		}
	}()
}

// Request is a request as the fake agent read it.
type Request struct {
	protocol.Request
	// AfterResyncByte is true when a 0xFF byte came since the previous line.
	AfterResyncByte bool
}

// Conn is one connection to the fake agent.
type Conn struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader

	wmu sync.Mutex
}

// Close closes the connection (the client sees EOF).
func (c *Conn) Close() { c.nc.Close() }

// readRequest reads the next line, dropping partial lines cut by 0xFF.
func (c *Conn) readRequest() (Request, error) {
	var line []byte
	sawFF := false
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return Request{}, err
		}
		switch b {
		case protocol.ResyncByte:
			line, sawFF = line[:0], true
			continue
		case '\n':
		default:
			line = append(line, b)
			continue
		}
		var req protocol.Request
		if err := json.Unmarshal(line, &req); err != nil {
			return Request{}, &lineError{line: string(line), err: err}
		}
		return Request{Request: req, AfterResyncByte: sawFF}, nil
	}
}

type lineError struct {
	line string
	err  error
}

func (e *lineError) Error() string {
	return "fake agent: bad request line " + e.line + ": " + e.err.Error()
}

// Next reads the next request; it fails the test on EOF, a bad line or
// after a generous timeout.
func (c *Conn) Next() Request {
	c.t.Helper()
	if err := c.nc.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		c.t.Fatalf("set read deadline: %v", err)
	}
	req, err := c.readRequest()
	if err != nil {
		c.t.Fatalf("fake agent: read request: %v", err)
	}
	return req
}

// ReadErr reads the next request and returns the read error: tests use it
// to see the client close the connection (io.EOF).
func (c *Conn) ReadErr() error {
	if err := c.nc.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	_, err := c.readRequest()
	return err
}

// Reply writes a result for id.
func (c *Conn) Reply(id json.RawMessage, result any) {
	c.t.Helper()
	b, err := json.Marshal(result)
	if err != nil {
		c.t.Fatalf("fake agent: encode result: %v", err)
	}
	c.write(protocol.Response{JSONRPC: protocol.JSONRPCVersion, Result: b, ID: id})
}

// ReplyError writes an error for id.
func (c *Conn) ReplyError(id json.RawMessage, e *protocol.Error) {
	c.t.Helper()
	c.write(protocol.Response{JSONRPC: protocol.JSONRPCVersion, Error: e, ID: id})
}

// ReplySync answers a sync request as the agent does.
func (c *Conn) ReplySync(req Request) {
	c.t.Helper()
	var p protocol.SyncParams
	if err := json.Unmarshal(req.Params, &p); err != nil {
		c.t.Fatalf("fake agent: sync params %s: %v", req.Params, err)
	}
	c.Reply(req.ID, p.ID)
}

// WriteLine writes raw bytes followed by a newline.
func (c *Conn) WriteLine(b []byte) {
	c.t.Helper()
	if err := c.writeRaw(append(b, '\n')); err != nil {
		c.t.Errorf("fake agent: write: %v", err)
	}
}

func (c *Conn) write(resp protocol.Response) {
	c.t.Helper()
	b, err := json.Marshal(resp)
	if err != nil {
		c.t.Fatalf("fake agent: encode response: %v", err)
	}
	if err := c.writeRaw(append(b, '\n')); err != nil {
		c.t.Errorf("fake agent: write: %v", err)
	}
}

func (c *Conn) writeRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

func (c *Conn) serve(h Handler) {
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: handlers see the connection end
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		req, err := c.readRequest()
		var le *lineError
		if errors.As(err, &le) {
			c.writeRaw(errorLine(nil, protocol.Errorf(protocol.CodeParseError, "%v", le.err))) //nolint:errcheck // best effort
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.t.Logf("fake agent: read: %v", err)
			}
			return
		}
		if req.Method == protocol.MethodSync {
			var p protocol.SyncParams
			if err := json.Unmarshal(req.Params, &p); err != nil {
				c.writeRaw(errorLine(req.ID, protocol.Errorf(protocol.CodeInvalidParams, "%v", err))) //nolint:errcheck // best effort
				continue
			}
			b, _ := json.Marshal(protocol.Response{JSONRPC: protocol.JSONRPCVersion, Result: json.RawMessage(jsonInt(p.ID)), ID: req.ID})
			c.writeRaw(append(b, '\n')) //nolint:errcheck // the client may be gone
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h(ctx, req.Method, req.Params)
			if len(req.ID) == 0 {
				return // notification
			}
			if err != nil {
				var perr *protocol.Error
				if !errors.As(err, &perr) {
					perr = protocol.Errorf(protocol.CodeInternalError, "%v", err)
				}
				c.writeRaw(errorLine(req.ID, perr)) //nolint:errcheck // the client may be gone
				return
			}
			b, err := json.Marshal(res)
			if err != nil {
				c.writeRaw(errorLine(req.ID, protocol.Errorf(protocol.CodeInternalError, "encode result: %v", err))) //nolint:errcheck // best effort
				return
			}
			line, _ := json.Marshal(protocol.Response{JSONRPC: protocol.JSONRPCVersion, Result: b, ID: req.ID})
			c.writeRaw(append(line, '\n')) //nolint:errcheck // the client may be gone
		}()
	}
}

func errorLine(id json.RawMessage, e *protocol.Error) []byte {
	if id == nil {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(protocol.Response{JSONRPC: protocol.JSONRPCVersion, Error: e, ID: id})
	return append(b, '\n')
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
