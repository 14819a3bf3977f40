//go:build !windows

package qga

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// validJSON must agree with encoding/json on every input: the stream
// relies on it to refuse what QEMU's parser refuses.
func TestValidJSONAgreesWithEncodingJSON(t *testing.T) {
	seeds := []string{
		`{"execute":"guest-file-write","arguments":{"handle":1000,"buf-b64":"aGVsbG8=","count":5},"id":"a\"b\\c\/\u00e9\b\f\n\r\t"}`,
		`[1,-0,0.5,-12.25e+10,3E-2,1e5,true,false,null,{},[],"",{"a":[{"b":null}]}]`,
		` {"a" : 1 , "b" :[ 2 ,3 ] } `, `"x"`, `0`, `-`, `01`, `1.`, `.5`, `1e`, `1e+`, `+1`, `--1`,
		`{"a":1,}`, `[1,]`, `{,}`, `{"a"}`, `{"a":}`, `{a:1}`, `"\x"`, `"\u12g4"`, `"\u12"`, "\"\x01\"", "\"\x7f\"",
		`tru`, `nul`, `falsey`, `{"a":1}}`, `[[[]]`, `{}{}`, `"unterminated`, `"\`, ``, ` `, `[1 2]`, `{"a":1 "b":2}`,
	}
	for _, s := range seeds {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("validJSON(%q) = %v, encoding/json says %v", s, got, want)
		}
	}
	// Mutations of the seeds: bytes replaced, inserted and cut.
	alphabet := []byte("{}[]\",:\\ \t\n-+.0123456789eEtrufalsn\x00\x1f\x7fub/x")
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		b := []byte(seeds[rng.IntN(len(seeds))])
		for range 1 + rng.IntN(3) {
			c := alphabet[rng.IntN(len(alphabet))]
			switch op := rng.IntN(3); {
			case len(b) == 0 || op == 0:
				i := rng.IntN(len(b) + 1)
				b = append(b[:i], append([]byte{c}, b[i:]...)...)
			case op == 1:
				b[rng.IntN(len(b))] = c
			default:
				i := rng.IntN(len(b))
				b = append(b[:i], b[i+1:]...)
			}
		}
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	}
	deep := strings.Repeat("[", MaxNesting) + strings.Repeat("]", MaxNesting)
	if !validJSON([]byte(deep)) {
		t.Errorf("%d nested arrays refused", MaxNesting)
	}
}
