package qga

import (
	"bytes"
	"encoding/json"
	"testing"
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
