package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestRawResult checks that a pre-encoded result is sent as it is, whether
// small (copied into the response buffer) or large (written around it),
// also inside a batch.
func TestRawResult(t *testing.T) {
	big := `{"content":"` + strings.Repeat("QUJD", rawResultInline) + `","size_bytes":1}`
	s := New(map[string]Handler{
		"small": func(context.Context, json.RawMessage) (any, error) { return RawResult(`{"a":1}`), nil },
		"big":   func(context.Context, json.RawMessage) (any, error) { return RawResult(big), nil },
	}, Options{})
	c := newClient(t, s)
	tests := []struct{ send, want string }{
		{`{"jsonrpc":"2.0","method":"small","id":1}`, `{"jsonrpc":"2.0","result":{"a":1},"id":1}`},
		{`{"jsonrpc":"2.0","method":"big","id":"x"}`, `{"jsonrpc":"2.0","result":` + big + `,"id":"x"}`},
		{`[{"jsonrpc":"2.0","method":"small","id":2},{"jsonrpc":"2.0","method":"big","id":3}]`,
			`[{"jsonrpc":"2.0","result":{"a":1},"id":2},{"jsonrpc":"2.0","result":` + big + `,"id":3}]`},
	}
	for _, tt := range tests {
		c.send(tt.send + "\n")
		if got := c.recv(); got != tt.want {
			t.Errorf("reply to %.60s: got %d bytes %.80q…, want %d bytes", tt.send, len(got), got, len(tt.want))
		}
	}
}
