package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSpoolScan feeds request lines to the scanner in chunks of several
// sizes: the params.content string, wherever it is, must come out as the
// spool and everything else, in order, as the kept line.
func TestSpoolScan(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		spooled string // "" with found false: nothing spooled
		found   bool
		escaped bool
	}{
		{"content after path", `{"jsonrpc":"2.0","method":"file_write","params":{"path":"/x","content":"QUJD","encoding":"base64"},"id":1}`, "QUJD", true, false},
		{"content first, params first", `{"params":{"content":"QUJD","path":"/x"},"method":"file_write","jsonrpc":"2.0","id":1}`, "QUJD", true, false},
		{"spaces everywhere", `{ "params" : { "path" : "/x" , "content" : "abc" } , "id" : 1 }`, "abc", true, false},
		{"escapes", `{"params":{"content":"a\"b\\c\u0041"},"id":1}`, `a\"b\\c\u0041`, true, true},
		{"empty string", `{"params":{"content":""},"id":1}`, "", true, false},
		{"only the first of two", `{"params":{"content":"a","content":"b"}}`, "a", true, false},
		{"string values that look like keys", `{"method":"{\"params\":{\"content\":\"no\"}}","params":{"path":"content","x":"content"}}`, "", false, false},
		{"content at the top level", `{"content":"x","params":{}}`, "", false, false},
		{"content nested deeper", `{"params":{"opts":{"content":"x"}}}`, "", false, false},
		{"content after a nested object", `{"params":{"opts":{"a":[1,{"b":"c"}]},"content":"yes"}}`, "yes", true, false},
		{"content not a string", `{"params":{"content":5,"x":"content"}}`, "", false, false},
		{"params an array", `{"params":["content","x"]}`, "", false, false},
		{"a batch", `[{"params":{"content":"x"}}]`, "", false, false},
		{"a longer key", `{"params":{"contents":"x","contentx":"y"},"paramsx":{"content":"z"}}`, "", false, false},
		{"escaped key", `{"params":{"cont\u0065nt":"x"}}`, "", false, false},
	}
	for _, tc := range tests {
		for _, size := range []int{1, 2, 3, 7, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				var sc spoolScan
				var kept, spooled strings.Builder
				found := false
				at := -1
				keep := func(b []byte) error { kept.Write(b); return nil }
				spool := func(b []byte) error { spooled.Write(b); return nil }
				start := func() bool { found = true; at = kept.Len(); return true }
				for i := 0; i < len(tc.line); i += size {
					if err := sc.feed([]byte(tc.line[i:min(i+size, len(tc.line))]), keep, spool, start); err != nil {
						t.Fatal(err)
					}
				}
				if found != tc.found || spooled.String() != tc.spooled || sc.escaped != tc.escaped {
					t.Fatalf("spooled %v %q (escaped %v), want %v %q (escaped %v)", found, spooled.String(), sc.escaped, tc.found, tc.spooled, tc.escaped)
				}
				want := tc.line
				if found {
					want = tc.line[:at] + tc.line[at+len(tc.spooled):]
				}
				if kept.String() != want {
					t.Fatalf("kept %q, want %q", kept.String(), want)
				}
			})
		}
	}
}

// spoolHandlers: "take" is a spooled method answering with its params and
// the spooled text; "whole" takes its params whole.
func spoolHandlers() map[string]Handler {
	return map[string]Handler{
		"take": func(ctx context.Context, params json.RawMessage) (any, error) {
			sp := SpooledContent(ctx)
			if sp == nil {
				return map[string]any{"params": params, "spooled": nil}, nil
			}
			b, err := io.ReadAll(sp.Reader())
			if err != nil {
				return nil, err
			}
			return map[string]any{"params": params, "spooled": len(b), "head": string(b[:min(8, len(b))]), "escaped": sp.Escaped()}, nil
		},
		"whole": func(_ context.Context, params json.RawMessage) (any, error) {
			var p struct {
				Content string `json:"content"`
				Path    string `json:"path"`
			}
			if err := json.Unmarshal(params, &p); err != nil {
				return nil, err
			}
			return map[string]any{"len": len(p.Content), "path": p.Path}, nil
		},
		"ping": func(context.Context, json.RawMessage) (any, error) {
			return map[string]any{"pong": true, "timestamp": 1700000000}, nil
		},
	}
}

// TestSpooledRequests sends lines far longer than the read buffer, and far
// longer than the memory budget's share for request input: a spooled method
// gets its content from the spool and the rest of its params in the line;
// another method gets its whole params; broken JSON inside or around the
// spooled string is a parse error and the connection goes on; nothing stays
// in the spool directory or in the budget.
func TestSpooledRequests(t *testing.T) {
	dir := t.TempDir()
	budget := NewBudget(8<<20, time.Second) // request input may hold 4 MiB
	s := New(spoolHandlers(), Options{
		Spooled:      map[string]bool{"take": true},
		SpoolDir:     dir,
		Budget:       budget,
		MaxLineBytes: 32 << 20,
	})
	big := strings.Repeat("QUJD", 5<<20/4) // 5 MiB: over the input share
	tests := []struct {
		name string
		line string
		want string
	}{
		{"spooled, content last",
			`{"jsonrpc":"2.0","method":"take","params":{"path":"/x","content":"` + big + `"},"id":1}`,
			`{"jsonrpc":"2.0","result":{"escaped":false,"head":"QUJDQUJD","params":{"path":"/x","content":""},"spooled":5242880},"id":1}`},
		{"spooled, params and content first",
			`{"params":{"content":"` + big + `","path":"/y"},"id":2,"method":"take","jsonrpc":"2.0"}`,
			`{"jsonrpc":"2.0","result":{"escaped":false,"head":"QUJDQUJD","params":{"content":"","path":"/y"},"spooled":5242880},"id":2}`},
		{"escapes stay escaped",
			`{"jsonrpc":"2.0","method":"take","params":{"content":"\"\\` + big + `"},"id":3}`,
			`{"jsonrpc":"2.0","result":{"escaped":true,"head":"\\\"\\\\QUJD","params":{"content":""},"spooled":5242884},"id":3}`},
		{"rebuilt for a method taking params whole",
			`{"jsonrpc":"2.0","method":"whole","params":{"content":"` + big[:3<<20] + `","path":"/z"},"id":4}`,
			`{"jsonrpc":"2.0","result":{"len":3145728,"path":"/z"},"id":4}`},
		{"a control byte in the content",
			`{"jsonrpc":"2.0","method":"take","params":{"content":"` + big[:1<<20] + "\x01" + big[:1<<20] + `"},"id":5}`,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: the line is not valid JSON"},"id":null}`},
		{"the line breaks off after the content",
			`{"jsonrpc":"2.0","method":"take","params":{"content":"` + big + `"},"id":`,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: the line is not valid JSON"},"id":null}`},
		{"the content string never ends",
			`{"jsonrpc":"2.0","method":"take","params":{"content":"` + big,
			`{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error: the line is not valid JSON"},"id":null}`},
		{"an unknown method",
			`{"jsonrpc":"2.0","method":"nope","params":{"content":"` + big + `"},"id":6}`,
			`{"jsonrpc":"2.0","error":{"code":-32601,"message":"method \"nope\" not found"},"id":6}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, s)
			c.send(tc.line + "\n" + pingSentinel)
			// The sentinel's inline reply may overtake the request's.
			got, other := c.recv(), c.recv()
			if got == pingSentinelReply {
				got, other = other, got
			}
			if got != tc.want || other != pingSentinelReply {
				t.Fatalf("replies\n got %.300s\n and %.300s\nwant %.300s", got, other, tc.want)
			}
			c.conn.Close()
			if err := <-c.done; err != nil {
				t.Fatal(err)
			}
			if n := budget.InUse(); n != 0 {
				t.Errorf("budget in use after the connection: %d bytes", n)
			}
			ents, err := os.ReadDir(dir)
			if err != nil || len(ents) != 0 {
				t.Errorf("spool directory after the reply: %v %v", ents, err)
			}
		})
	}
}

// FuzzSpoolScan: on any bytes, fed whole or in small chunks, the scanner
// splits the line the same way, and the kept bytes with the spooled ones
// put back where the string was are the line.
func FuzzSpoolScan(f *testing.F) {
	f.Add([]byte(`{"params":{"path":"/x","content":"QUJD\"\\"},"id":1}`), 3)
	f.Add([]byte(`{"params":{"content":"x"},"params":{"content":"y"}}`), 1)
	f.Add([]byte(`[{"params":{"content":"x"}}]`), 2)
	f.Fuzz(func(t *testing.T, line []byte, size int) {
		split := func(size int) (kept, spooled string, at int) {
			var sc spoolScan
			var k, s strings.Builder
			at = -1
			keep := func(b []byte) error { k.Write(b); return nil }
			spool := func(b []byte) error { s.Write(b); return nil }
			start := func() bool { at = k.Len(); return true }
			for i := 0; i < len(line); i += size {
				if err := sc.feed(line[i:min(i+size, len(line))], keep, spool, start); err != nil {
					t.Fatal(err)
				}
			}
			return k.String(), s.String(), at
		}
		size = 1 + (size&0xff)%64
		k1, s1, at1 := split(len(line) + 1)
		k2, s2, at2 := split(size)
		if k1 != k2 || s1 != s2 || at1 != at2 {
			t.Fatalf("whole: %q %q %d; in %d-byte chunks: %q %q %d", k1, s1, at1, size, k2, s2, at2)
		}
		if at1 < 0 {
			if s1 != "" || k1 != string(line) {
				t.Fatalf("nothing spooled, yet kept %q spooled %q", k1, s1)
			}
			return
		}
		if got := k1[:at1] + s1 + k1[at1:]; got != string(line) {
			t.Fatalf("put back %q, want %q", got, line)
		}
	})
}

// TestHasControl checks the word-at-a-time test against the byte rule at
// every position of a long buffer, with the bytes either side of the bound
// and ones with the high bit set (UTF-8) around it.
func TestHasControl(t *testing.T) {
	tests := []struct {
		name string
		b    byte
		want bool
	}{
		{"NUL", 0x00, true},
		{"newline", '\n', true},
		{"unit separator 0x1f", 0x1f, true},
		{"space 0x20", 0x20, false},
		{"DEL 0x7f", 0x7f, false},
		{"0x80", 0x80, false},
		{"0x9f", 0x9f, false},
		{"0xa0", 0xa0, false},
		{"0xff", 0xff, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fill := range []byte{'A', 0x20, 0x80, 0xc3, 0xff} {
				buf := bytes.Repeat([]byte{fill}, 77)
				if hasControl(buf) {
					t.Fatalf("fill %#x alone: control byte reported", fill)
				}
				for i := range buf {
					buf[i] = tt.b
					if got := hasControl(buf); got != tt.want {
						t.Fatalf("fill %#x, %#x at %d of %d: hasControl = %v, want %v", fill, tt.b, i, len(buf), got, tt.want)
					}
					buf[i] = fill
				}
			}
		})
	}
}
