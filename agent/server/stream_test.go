package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeStream writes {"data":"<n x's>"} in chunks, failing after fail bytes
// of data when fail >= 0.
type fakeStream struct {
	n, fail int
	closed  *atomic.Int32
}

func (f *fakeStream) EncodedLen() int64 { return int64(f.n) + 12 }

func (f *fakeStream) WriteJSON(w io.Writer) error {
	if _, err := io.WriteString(w, `{"data":"`); err != nil {
		return err
	}
	for sent := 0; sent < f.n; sent += 1000 {
		if f.fail >= 0 && sent >= f.fail {
			return errors.New("disk on fire")
		}
		if _, err := io.WriteString(w, strings.Repeat("x", min(1000, f.n-sent))); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, `"}`)
	return err
}

func (f *fakeStream) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	err := f.WriteJSON(&b)
	return []byte(b.String()), err
}

func (f *fakeStream) Close() error { f.closed.Add(1); return nil }

// TestStreamResult: a streamed result is written whole between the
// response's head and tail, alone or in a batch; one that fails while it is
// written cuts its line short (invalid JSON for the host) and the
// connection goes on; every result is closed.
func TestStreamResult(t *testing.T) {
	var closed atomic.Int32
	h := spoolHandlers()
	h["stream"] = func(_ context.Context, params json.RawMessage) (any, error) {
		var p struct{ N, Fail int }
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		return &fakeStream{n: p.N, fail: p.Fail, closed: &closed}, nil
	}
	s := New(h, Options{})
	big := strings.Repeat("x", 200000)
	tests := []struct {
		name, line, want string
		closes           int32
	}{
		{"alone", `{"jsonrpc":"2.0","method":"stream","params":{"n":200000,"fail":-1},"id":1}`,
			`{"jsonrpc":"2.0","result":{"data":"` + big + `"},"id":1}`, 1},
		{"in a batch", `[{"jsonrpc":"2.0","method":"stream","params":{"n":200000,"fail":-1},"id":2},{"jsonrpc":"2.0","method":"stream","params":{"n":3,"fail":-1},"id":3}]`,
			`[{"jsonrpc":"2.0","result":{"data":"` + big + `"},"id":2},{"jsonrpc":"2.0","result":{"data":"xxx"},"id":3}]`, 2},
		{"a notification", `{"jsonrpc":"2.0","method":"stream","params":{"n":200000,"fail":-1}}`, "", 1},
		{"failing midway", `{"jsonrpc":"2.0","method":"stream","params":{"n":200000,"fail":5000},"id":4}`,
			`{"jsonrpc":"2.0","result":{"data":"` + big[:5000], 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			closed.Store(0)
			c := newClient(t, s)
			c.send(tc.line + "\n" + pingSentinel)
			got := c.recv()
			if tc.want != "" {
				if got == pingSentinelReply {
					got, _ = c.recv(), 0
				} else if next := c.recv(); next != pingSentinelReply {
					t.Fatalf("after the reply: %.200s", next)
				}
			}
			if tc.want == "" {
				tc.want = pingSentinelReply
			}
			if got != tc.want {
				t.Fatalf("reply %.200s... (%d bytes), want %.200s... (%d bytes)", got, len(got), tc.want, len(tc.want))
			}
			c.conn.Close()
			if err := <-c.done; err != nil {
				t.Fatal(err)
			}
			if n := closed.Load(); n != tc.closes {
				t.Errorf("results closed %d times, want %d", n, tc.closes)
			}
		})
	}
}
