package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// A batch's reply is bounded like a request line: a host cannot make the
// agent hold one large result per element (a batch of 1024 file_reads of a
// 10 MiB file would otherwise pin 13 GiB). Replies that do not fit are
// replaced by an error telling the host to send that request alone.
func TestBatchReplyBounded(t *testing.T) {
	const limit = 8 << 10
	big := strings.Repeat("x", 3<<10)
	h := testHandlers()
	h["big"] = func(context.Context, json.RawMessage) (any, error) { return big, nil }
	// One request at a time, so that the elements finish in order.
	c := newClient(t, New(h, Options{MaxLineBytes: limit, MaxConcurrent: 1}))
	elems := make([]string, 6)
	for i := range elems {
		elems[i] = fmt.Sprintf(`{"jsonrpc":"2.0","method":"big","id":%d}`, i)
	}
	c.send("[" + strings.Join(elems, ",") + `,{"jsonrpc":"2.0","method":"ping","id":"p"}]` + "\n")
	line := c.recv()
	if len(line) > limit+1024 {
		t.Fatalf("batch reply is %d bytes, want about the limit of %d at most", len(line), limit)
	}
	var resps []struct {
		Result json.RawMessage `json:"result"`
		Error  *protocol.Error `json:"error"`
		ID     json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal([]byte(line), &resps); err != nil {
		t.Fatalf("decode %.200s: %v", line, err)
	}
	if len(resps) != 7 {
		t.Fatalf("%d replies, want 7", len(resps))
	}
	for i, r := range resps[:6] {
		if string(r.ID) != fmt.Sprint(i) {
			t.Errorf("reply %d has id %s", i, r.ID)
		}
		switch {
		case i < 2:
			if r.Error != nil || string(r.Result) != `"`+big+`"` {
				t.Errorf("reply %d: %v, want the full result", i, r.Error)
			}
		case r.Error == nil:
			t.Errorf("reply %d: a full result beyond the batch reply limit", i)
		case r.Error.Code != protocol.CodeInvalidRequest || !strings.Contains(r.Error.Message, "on its own"):
			t.Errorf("reply %d: error %d %q, want -32600 telling to send it on its own", i, r.Error.Code, r.Error.Message)
		}
	}
	if p := resps[6]; p.Error != nil || string(p.ID) != `"p"` {
		t.Errorf("small reply after the limit: %+v, want the ping result", p)
	}
	// The connection is still usable.
	c.send(pingSentinel)
	if got := c.recv(); got != pingSentinelReply {
		t.Errorf("after the batch: got %s", got)
	}
}

// Ids are echoed raw; one that is not valid UTF-8 would make the reply line
// invalid JSON for strict host parsers, so it is refused like an object id.
func TestInvalidUTF8IDRefused(t *testing.T) {
	c := newClient(t, New(testHandlers(), Options{}))
	for _, in := range []string{
		"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":\"a\xfeb\"}",
		"[{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":\"\xc0\xaf\"}]",
	} {
		c.send(in + "\n")
		got := c.recv()
		if !utf8.ValidString(got) || !json.Valid([]byte(got)) {
			t.Fatalf("reply to %q is not valid UTF-8 JSON: %q", in, got)
		}
		want := `{"jsonrpc":"2.0","error":{"code":-32600,"message":"invalid request: id must be a number, a string or null"},"id":null}`
		if in[0] == '[' {
			want = "[" + want + "]"
		}
		if got != want {
			t.Errorf("got %s\nwant %s", got, want)
		}
	}
	c.send("{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":\"\\u00e9\xc3\xa9\"}\n")
	if got := c.recv(); got != `{"jsonrpc":"2.0","result":{"pong":true,"timestamp":1700000000},"id":"\u00e9é"}` {
		t.Errorf("valid UTF-8 id: got %s", got)
	}
}

// A member given twice is refused with -32600: parsers disagree on which
// one wins (this scanner took the last, a host's library may take the
// first), so the agent could act on another request than the host logged.
// The connection goes on.
func TestDuplicateMembersRefused(t *testing.T) {
	c := newClient(t, New(testHandlers(), Options{}))
	tests := []struct {
		line, wantID, member string
	}{
		{`{"jsonrpc":"2.0","method":"ping","method":"echo","id":1}`, `1`, "method"},
		{`{"jsonrpc":"2.0","method":"ping","params":{},"params":null,"id":2}`, `2`, "params"},
		{`{"jsonrpc":"2.0","jsonrpc":"2.0","method":"ping","id":3}`, `3`, "jsonrpc"},
		{`{"jsonrpc":"2.0","method":"ping","id":4,"id":5}`, `null`, "id"},
		{`{"jsonrpc":"2.0","method":"ping","x":1,"\u0078":2,"id":6}`, `6`, "x"},
	}
	for _, tt := range tests {
		c.send(tt.line + "\n")
		var r struct {
			Error *protocol.Error `json:"error"`
			ID    json.RawMessage `json:"id"`
		}
		line := c.recv()
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: reply %q: %v", tt.line, line, err)
		}
		if r.Error == nil || r.Error.Code != protocol.CodeInvalidRequest || !strings.Contains(r.Error.Message, `"`+tt.member+`" given twice`) || string(r.ID) != tt.wantID {
			t.Errorf("%s: reply %s, want -32600 naming %q with id %s", tt.line, line, tt.member, tt.wantID)
		}
	}
	c.send(`{"jsonrpc":"2.0","method":"ping","id":"after"}` + "\n")
	if line := c.recv(); !strings.Contains(line, `"result"`) {
		t.Fatalf("after the refusals: %s", line)
	}
}
