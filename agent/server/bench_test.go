package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

const pingLine = `{"jsonrpc":"2.0","method":"ping","id":12345}` + "\n"

// repeater yields the same line forever.
type repeater struct {
	line []byte
	off  int
}

func (r *repeater) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.line[r.off:])
		n += c
		r.off = (r.off + c) % len(r.line)
	}
	return n, nil
}

func BenchmarkLineReader(b *testing.B) {
	lr := newLineReader(&repeater{line: []byte(pingLine)}, protocol.LineLimit(protocol.DefaultMaxFileSize))
	b.SetBytes(int64(len(pingLine)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := lr.next(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	s := New(testHandlers(), Options{})
	c := s.newConn(context.Background(), nil)
	line := []byte(strings.TrimSpace(pingLine))
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(line) {
			b.Fatal("invalid")
		}
		cl, _, perr := c.prepare(line, false)
		if cl == nil || perr != nil {
			b.Fatal(perr)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	id := []byte("12345")
	res := protocol.PingResult{Pong: true, Timestamp: 1700000000}
	b.ReportAllocs()
	for b.Loop() {
		buf := getBuf()
		buf.appendResponse(id, res, nil)
		buf.WriteByte('\n')
		putBuf(buf)
	}
}

// pipeConn feeds n copies of a line and counts the reply bytes.
type pipeConn struct {
	r       io.Reader
	written int64
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { p.written += int64(len(b)); return len(b), nil }

// BenchmarkServePipelined measures the whole hot path for pipelined pings:
// line reading, decoding, dispatch to a goroutine, encoding and the write.
func BenchmarkServePipelined(b *testing.B) {
	s := New(testHandlers(), Options{})
	b.ReportAllocs()
	b.SetBytes(int64(len(pingLine)))
	conn := &pipeConn{r: io.LimitReader(&repeater{line: []byte(pingLine)}, int64(b.N)*int64(len(pingLine)))}
	b.ResetTimer()
	if err := s.ServeConn(context.Background(), conn); err != nil {
		b.Fatal(err)
	}
	if want := int64(b.N) * int64(len(`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":12345}`)+1); conn.written != want {
		b.Fatalf("wrote %d bytes, want %d", conn.written, want)
	}
}

// BenchmarkRoundTrip measures one request at a time over a unix socket pair,
// as a host waiting for each reply sees it. "server" is the agent's server;
// "floor" is the least any Go server can do on the same socket: read a
// line, write a fixed reply of the same size, nothing else. The difference
// is all the server's own work per request; the floor is wake-ups and
// system calls on both sides.
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("server", func(b *testing.B) {
		benchRoundTrip(b, func(c net.Conn) {
			// Options.Inline as the agent sets it for ping.
			New(testHandlers(), Options{Inline: map[string]bool{"ping": true}}).ServeConn(context.Background(), c)
		})
	})
	b.Run("floor", func(b *testing.B) {
		benchRoundTrip(b, func(c net.Conn) {
			reply := []byte(`{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":12345}` + "\n")
			r := bufio.NewReader(c)
			for {
				if _, err := r.ReadSlice('\n'); err != nil {
					return
				}
				if _, err := c.Write(reply); err != nil {
					return
				}
			}
		})
	})
}

func benchRoundTrip(b *testing.B, serve func(net.Conn)) {
	t := &testing.T{}
	a, c := socketPair(t)
	defer a.Close()
	go func() { serve(c); c.Close() }()
	r := bufio.NewReader(a)
	req := []byte(pingLine)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := r.ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileWriteLine pushes a 10 MiB file_write (base64) through the
// reader and dispatcher to a handler that decodes it as the real one does.
func BenchmarkFileWriteLine(b *testing.B) {
	benchFileWrite(b, Options{}, func(ctx context.Context, params json.RawMessage) (any, error) {
		var p protocol.FileWriteParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		data, err := base64.StdEncoding.DecodeString(p.Content)
		return protocol.FileWriteResult{BytesWritten: int64(len(data)), Path: p.Path}, err
	})
}

// BenchmarkFileWriteSpooled pushes a 10 MiB file_write (base64) through the
// reader with its content spooled to a file as it streams in, to a handler
// that reads the spool back: the server's share of a file_write.
func BenchmarkFileWriteSpooled(b *testing.B) {
	opts := Options{Spooled: map[string]bool{"file_write": true}, SpoolDir: b.TempDir()}
	benchFileWrite(b, opts, func(ctx context.Context, params json.RawMessage) (any, error) {
		sp := SpooledContent(ctx)
		if sp == nil {
			return nil, errors.New("content not spooled")
		}
		n, err := io.Copy(io.Discard, sp.Reader())
		return protocol.FileWriteResult{BytesWritten: n, Path: "/tmp/x"}, err
	})
}

// benchFileWrite serves b.N 10 MiB file_write lines (base64) with opts to
// handler as file_write.
func benchFileWrite(b *testing.B, opts Options, handler Handler) {
	content := base64.StdEncoding.EncodeToString(make([]byte, 10<<20))
	line := []byte(`{"jsonrpc":"2.0","method":"file_write","params":{"path":"/tmp/x","encoding":"base64","content":"` + content + `"},"id":1}` + "\n")
	h := testHandlers()
	h["file_write"] = handler
	s := New(h, opts)
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	conn := &pipeConn{r: io.LimitReader(&repeater{line: line}, int64(b.N)*int64(len(line)))}
	b.ResetTimer()
	if err := s.ServeConn(context.Background(), conn); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkHasControl(b *testing.B) {
	buf := []byte(strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=", 2000))[:64<<10]
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if hasControl(buf) {
			b.Fatal("control byte found in base64 text")
		}
	}
}
