package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// refLines is a byte-at-a-time model of the line reader: the lines it must
// return and the number of oversize lines it reports.
func refLines(in []byte, max int) (lines []string, oversize int) {
	var cur []byte
	discarding := false
	emit := func() {
		lines = append(lines, string(bytes.TrimSuffix(cur, []byte("\r"))))
		cur = cur[:0]
	}
	for _, c := range in {
		switch {
		case c == 0xFF:
			cur, discarding = cur[:0], false
		case c == '\n':
			if !discarding {
				emit()
			}
			discarding = false
		case discarding:
		default:
			cur = append(cur, c)
			if len(cur) > max {
				oversize++
				cur, discarding = cur[:0], true
			}
		}
	}
	if len(cur) > 0 && !discarding {
		emit()
	}
	return lines, oversize
}

func FuzzLineReader(f *testing.F) {
	for _, s := range []string{"a\nb\n", "x\xffy\n", "123456789\n", "ab\r\n\r\n", "\xff\xff\n", "1234567\xff\n", "abc"} {
		f.Add([]byte(s), uint8(5))
	}
	f.Fuzz(func(t *testing.T, in []byte, max8 uint8) {
		max := int(max8%64) + 1
		wantLines, wantOversize := refLines(in, max)
		lr := newLineReader(bytes.NewReader(in), max)
		var lines []string
		oversize := 0
		for {
			line, kind, err := lr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("next: %v", err)
				}
				break
			}
			if kind == lineOversize {
				oversize++
				continue
			}
			if len(line) > max || bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, 0xFF) >= 0 {
				t.Fatalf("bad line %q (max %d)", line, max)
			}
			lines = append(lines, string(line))
			if cap(lr.scratch) > max {
				t.Fatalf("scratch %d bytes for max %d", cap(lr.scratch), max)
			}
		}
		if !slices.Equal(lines, wantLines) {
			t.Fatalf("lines %q, want %q", lines, wantLines)
		}
		// An oversize line cut short by 0xFF inside one buffered chunk is
		// dropped without a report; every other one is reported once.
		if oversize > wantOversize {
			t.Fatalf("%d oversize reports, want at most %d", oversize, wantOversize)
		}
	})
}

func FuzzServeConn(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","method":"ping","id":1}`,
		`{"jsonrpc":"2.0","method":"echo","params":{"a":"\u00ff"},"id":"x"}`,
		`[{"jsonrpc":"2.0","method":"ping","id":1},{"jsonrpc":"2.0","method":"ping"},3]`,
		`[]`, `{}`, `{"jsonrpc":"2.0","method":"panics","id":null}`,
		`{"jsonrpc":"2.0","method":"ping","id":1` + "\xff" + `{"jsonrpc":"2.0","method":"sync","params":{"id":5},"id":5}`,
		`{"json\u0072pc":"2.0","method":"p\u0069ng","id":[1]}`,
		`{"jsonrpc":"2.0","method":"echo","params":[` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `],"id":1}`,
	} {
		f.Add([]byte(s + "\n" + s))
	}
	h := testHandlers()
	h["sync"] = func(ctx context.Context, params json.RawMessage) (any, error) {
		var p struct{ ID int64 }
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		return p.ID, nil
	}
	s := New(h, Options{MaxLineBytes: 512, MaxConcurrent: 4, Inline: map[string]bool{"ping": true, "sync": true}})
	f.Fuzz(func(t *testing.T, in []byte) {
		rec := &recorder{in: bytes.NewReader(in)}
		if err := s.ServeConn(context.Background(), rec); err != nil {
			t.Fatalf("ServeConn: %v", err)
		}
		for _, out := range rec.events {
			if strings.Contains(out, "\n") {
				t.Fatalf("reply spans lines: %q", out)
			}
			var resp any
			if err := json.Unmarshal([]byte(out), &resp); err != nil {
				t.Fatalf("reply is not JSON: %v: %q", err, out)
			}
			objs, ok := resp.([]any)
			if !ok {
				objs = []any{resp}
			}
			for _, o := range objs {
				m, ok := o.(map[string]any)
				if !ok || m["jsonrpc"] != "2.0" {
					t.Fatalf("not a JSON-RPC response: %q", out)
				}
				_, hasResult := m["result"]
				_, hasError := m["error"]
				_, hasID := m["id"]
				if hasResult == hasError || !hasID {
					t.Fatalf("response needs exactly one of result and error, and an id: %q", out)
				}
			}
		}
	})
}

// FuzzLineReaderSpool: with spooling on and a 16-byte read buffer (so that
// most lines outgrow it), every line, its spooled string put back, is the
// line the reader returns without spooling, and the same lines are
// oversize.
func FuzzLineReaderSpool(f *testing.F) {
	for _, s := range []string{
		`{"params":{"path":"/x","content":"QUJDQUJDQUJDQUJD"},"id":1}` + "\n" + `{"params":{"content":"a\"b"}}`,
		`{"params":{"content":"QUJD` + "\xff" + `{"params":{"content":"x"}}` + "\n",
		`}]["params":{"content":"` + "\n" + `{"content":"x"}`,
		`{"params":{"content":"abcdefghijklmnopqrstuvwxyz` + "\r\n",
	} {
		f.Add([]byte(s), uint8(60))
	}
	f.Fuzz(func(t *testing.T, in []byte, max8 uint8) {
		max := int(max8%128) + 1
		read := func(spool bool) []string {
			lr := newLineReaderSize(bytes.NewReader(in), max, 16)
			lr.spoolOn, lr.spoolDir = spool, t.TempDir()
			defer lr.close()
			var lines []string
			for {
				line, kind, err := lr.next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("next: %v", err)
					}
					return lines
				}
				if kind == lineOversize {
					lines = append(lines, "<oversize>")
					continue
				}
				got := string(line)
				if sp, at := lr.takeSpool(); sp != nil {
					text, err := sp.bytes()
					sp.Close()
					if err != nil {
						t.Fatal(err)
					}
					got = got[:at] + string(text) + got[at:]
					if sp.bad {
						// A parse error either way (the CR before
						// the newline may be in the spool).
						got = "<invalid>"
					}
				}
				lines = append(lines, got)
			}
		}
		plain, spooled := read(false), read(true)
		for i, l := range plain {
			if i < len(spooled) && spooled[i] == "<invalid>" && !json.Valid([]byte(l)) {
				plain[i] = "<invalid>"
			}
		}
		if !slices.Equal(plain, spooled) {
			t.Fatalf("spooled lines %q, want %q", spooled, plain)
		}
	})
}
