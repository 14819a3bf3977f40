package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValue(t *testing.T) {
	tests := []struct {
		in   string // a value followed by the rest
		want string // the value
	}{
		{`"abc",1`, `"abc"`},
		{`"a\"b\\",`, `"a\"b\\"`},
		{`"\\\\"}`, `"\\\\"`},
		{`{"a":[1,{"b":"}"}],"c":"]"} ,`, `{"a":[1,{"b":"}"}],"c":"]"}`},
		{`[[],[[]],"[" ]]`, `[[],[[]],"[" ]`},
		{`-12.5e3,`, `-12.5e3`},
		{`true}`, `true`},
		{`null]`, `null`},
		{`false`, `false`},
		{`"é ü"x`, `"é ü"`},
	}
	for _, tt := range tests {
		end := Value([]byte(tt.in), 0)
		if got := tt.in[:end]; got != tt.want {
			t.Errorf("Value(%q) took %q, want %q", tt.in, got, tt.want)
		}
		if !json.Valid([]byte(tt.want)) {
			t.Errorf("test case %q is not valid JSON", tt.want)
		}
	}
}

func TestStringEscaped(t *testing.T) {
	tests := []struct {
		in      string
		end     int
		escaped bool
	}{
		{`"plain"`, 7, false},
		{`"a\nb"`, 6, true},
		{`"\""`, 4, true},
		{`""`, 2, false},
	}
	for _, tt := range tests {
		end, esc := String([]byte(tt.in), 0)
		if end != tt.end || esc != tt.escaped {
			t.Errorf("String(%q) = %d, %v; want %d, %v", tt.in, end, esc, tt.end, tt.escaped)
		}
	}
}

func TestSkipSpace(t *testing.T) {
	if got := SkipSpace([]byte(" \t\r\n x"), 0); got != 5 {
		t.Errorf("SkipSpace = %d, want 5", got)
	}
	if got := SkipSpace([]byte("   "), 1); got != 3 {
		t.Errorf("SkipSpace at the end = %d, want 3", got)
	}
}

func TestPlain(t *testing.T) {
	long := strings.Repeat("QUJD", 100) // longer than a vector
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"abc", 3},
		{`abc"def`, 3},
		{`ab"c`, 2},
		{`a"b\c`, 1},
		{`"`, 0},
		{`\`, 0},
		{long, len(long)},
		{long + `\n"`, len(long)},
		{long + "\n\"", len(long) + 1},
		{long + `"` + long + `\`, len(long)},
	} {
		if got := Plain([]byte(tc.in)); got != tc.want {
			t.Errorf("Plain(%.20q…) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// Truncated or invalid input never reads out of range.
func FuzzValue(f *testing.F) {
	for _, s := range []string{`"a\`, `{"a":[`, `[`, `"`, `\`, `1`, `{"x":"\"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		for i := range b {
			if end := Value(b, i); end < i || end > len(b) {
				t.Fatalf("Value(%q, %d) = %d out of range", s, i, end)
			}
			if b[i] == '"' {
				if end, _ := String(b, i); end <= i || end > len(b) {
					t.Fatalf("String(%q, %d) = %d out of range", s, i, end)
				}
			}
		}
	})
}

func TestDuplicateMember(t *testing.T) {
	many := `{`
	for i := range 40 {
		many += `"k` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1,`
	}
	tests := []struct {
		in   string
		want string
		dup  bool
	}{
		{`{}`, "", false},
		{`{"a":1,"b":{"a":2}}`, "", false},
		{`{"a":1,"a":2}`, "a", true},
		{` { "a" : [1,{"b":2}] , "b":"x", "a" : null } `, "a", true},
		{`{"a\"b":1,"a\u0022b":2}`, `a"b`, true},
		{many + `"z":1}`, "", false},
		{many + `"kab":2}`, "kab", true},
		{many + `"kaa":2}`, "kaa", true}, // the first member again, after 40
		{`{"jsonrpc":"2.0","id":1,"method":"ping","id":2}`, "id", true},
		{`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"id":2}}`, "", false},
		{`{"a":1,"\u0061":2}`, "a", true}, // an escape after plain names
		{`{"":1,"":2}`, "", true},
		{`{"ab":1,"a":2,"b":3}`, "", false},
	}
	for _, tt := range tests {
		got, dup := DuplicateMember([]byte(tt.in))
		if got != tt.want || dup != tt.dup {
			t.Errorf("DuplicateMember(%s) = %q, %v; want %q, %v", tt.in, got, dup, tt.want, tt.dup)
		}
	}
}

func BenchmarkDuplicateMember(b *testing.B) {
	req := []byte(`{"jsonrpc":"2.0","id":12345,"method":"ping"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, dup := DuplicateMember(req); dup {
			b.Fatal("duplicate reported")
		}
	}
}
