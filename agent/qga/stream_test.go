//go:build !windows

package qga

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
)

func collect(st *stream, parts ...[]byte) []item {
	var out []item
	for _, p := range parts {
		st.feed(p, func(it item) {
			if it.obj != nil {
				it.obj = bytes.Clone(it.obj)
			}
			out = append(out, it)
		})
	}
	return out
}

// The stream yields only valid JSON objects, never panics, and yields the
// same items however the input is split into reads.
func FuzzStream(f *testing.F) {
	for _, s := range []string{`{"execute":"guest-ping"}{"a":[1,{"b":"}"}]}`, "{\"a\xff{}", `"s" 5 nul }{}`, `{"a":"\"\\"}`, "[[]]\n{}"} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		whole := collect(&stream{max: 1 << 10}, in)
		var parts [][]byte
		step := int(cut%17) + 1
		for i := 0; i < len(in); i += step {
			parts = append(parts, in[i:min(i+step, len(in))])
		}
		split := collect(&stream{max: 1 << 10}, parts...)
		if len(whole) != len(split) {
			t.Fatalf("%q: %d items whole, %d split by %d", in, len(whole), len(split), step)
		}
		for i := range whole {
			if !bytes.Equal(whole[i].obj, split[i].obj) || (whole[i].err == nil) != (split[i].err == nil) ||
				(whole[i].err != nil && *whole[i].err != *split[i].err) {
				t.Fatalf("%q: item %d differs: %+v vs %+v", in, i, whole[i], split[i])
			}
			if o := whole[i].obj; o != nil && (!json.Valid(o) || o[0] != '{') {
				t.Fatalf("%q: yielded %q, not a JSON object", in, o)
			}
			if whole[i].obj == nil && whole[i].err == nil {
				t.Fatalf("%q: empty item", in)
			}
		}
	})
}

// Whatever the host sends, the dialect answers with valid reply lines,
// each a return or an error, and never panics. (Exec, file writes and power
// are disabled: the fuzzer may well spell guest-shutdown.)
func FuzzServe(f *testing.F) {
	for _, s := range []string{`{"execute":"guest-ping","id":1}`, "\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":1}}",
		`{"execute":"guest-info"} [1] "x" nul }`, `{"execute":"guest-file-open","arguments":{"path":"/etc/hostname"}}`, `{"execute":"guest-get-osinfo","arguments":{"a":[{}]}}`} {
		f.Add([]byte(s))
	}
	cfg := config.Default()
	cfg.DisabledMethods = []string{"exec_command", "file_write", "shutdown", "reboot"}
	svc := methods.New(cfg, methods.Options{Power: &fakePower{calls: make(chan powerCall, 1000)}})
	d := New(svc, cfg, Options{MaxObject: 4096})
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &chunks{in: [][]byte{in}}
		if err := d.ServeConn(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		out := c.out.Bytes()
		for len(out) > 0 {
			i := bytes.IndexByte(out, '\n')
			if i < 0 {
				t.Fatalf("%q: reply without a newline: %q", in, out)
			}
			line := bytes.TrimPrefix(out[:i], []byte{0xFF})
			out = out[i+1:]
			var r map[string]json.RawMessage
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("%q: reply %q: %v", in, line, err)
			}
			_, ret := r["return"]
			_, qerr := r["error"]
			if ret == qerr || len(r) > 2 {
				t.Fatalf("%q: reply %q", in, line)
			}
		}
	})
}
