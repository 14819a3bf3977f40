package methods

import (
	"encoding/json"
	"strings"
	"testing"
)

// The captured output of a command is valid UTF-8 whose JSON encoding, as
// it goes on the wire, stays within max_output_bytes, on every OS.
func TestCappedBufferWireSize(t *testing.T) {
	for _, tt := range []struct {
		name      string
		max       int
		in        string
		want      string
		truncated bool
	}{
		{"fits", 10, "hello", "hello", false},
		{"cut at max", 4, "hello", "hell", true},
		{"quotes take two bytes", 5, `a"b"c`, `a"b`, true},
		{"NUL takes six bytes", 7, "a\x00bc", "a\x00", true},
		{"invalid UTF-8 becomes U+FFFD", 6, "a\xffb", "a\uFFFDb", false},
		{"a rune is not split", 2, "é!", "é", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newCappedBuffer(tt.max)
			if n, err := b.Write([]byte(tt.in)); n != len(tt.in) || err != nil {
				t.Fatalf("Write = %d, %v; want %d, nil (the rest is counted away)", n, err, len(tt.in))
			}
			got, truncated := b.result()
			if got != tt.want || truncated != tt.truncated {
				t.Errorf("result = %q, %v; want %q, %v", got, truncated, tt.want, tt.truncated)
			}
			enc, _ := json.Marshal(got)
			if wire := len(strings.Trim(string(enc), `"`)); wire > tt.max && !strings.ContainsAny(got, "<>&") {
				t.Errorf("%q is %d bytes on the wire, over %d", got, wire, tt.max)
			}
		})
	}
}
