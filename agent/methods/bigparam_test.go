//go:build !windows

package methods

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

func TestCutPlainString(t *testing.T) {
	tests := []struct {
		name, obj, key string
		ok             bool
		val, rest      string
	}{
		{"last member", `{"path":"/tmp/f","content":"aGVsbG8="}`, "content", true, "aGVsbG8=", `{"path":"/tmp/f","content":""}`},
		{"first member, spaces", `{ "content" : "aGk=" , "path": "/x"}`, "content", true, "aGk=", `{ "content" : "" , "path": "/x"}`},
		{"after nested values", `{"a":{"content":"no"},"b":["content",{"x":"}"}],"c":-1.5e3,"d":null,"content":"eWVz"}`, "content", true, "eWVz", `{"a":{"content":"no"},"b":["content",{"x":"}"}],"c":-1.5e3,"d":null,"content":""}`},
		{"key inside a string value", `{"path":"\"content\":\"x\"","content":"eQ=="}`, "content", true, "eQ==", `{"path":"\"content\":\"x\"","content":""}`},
		{"escapes fall back", `{"content":"aGVs\/bG8="}`, "content", false, "", ""},
		{"not a string", `{"content":42}`, "content", false, "", ""},
		{"absent", `{"path":"/x"}`, "content", false, "", ""},
		{"not an object", `["content","x"]`, "content", false, "", ""},
		{"empty string", `{"content":""}`, "content", true, "", `{"content":""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			val, rest, ok := cutPlainString([]byte(tt.obj), tt.key)
			if ok != tt.ok || string(val) != tt.val || (ok && string(rest) != tt.rest) {
				t.Fatalf("= %q, %q, %v; want %q, %q, %v", val, rest, ok, tt.val, tt.rest, tt.ok)
			}
			if ok && !json.Valid(rest) {
				t.Fatalf("rest %q is not valid JSON", rest)
			}
		})
	}
}

func TestDecodeBase64(t *testing.T) {
	data := make([]byte, 3*decodeChunk+1234) // several chunks, padded end
	rand.NewChaCha8([32]byte{1}).Read(data)
	enc := base64.StdEncoding.EncodeToString(data)
	// MIME-style line breaks, which decoding ignores, shift the quanta
	// across chunk boundaries.
	var wrapped strings.Builder
	for i := 0; i < len(enc); i += 76 {
		wrapped.WriteString(enc[i:min(i+76, len(enc))])
		wrapped.WriteString("\r\n")
	}
	// Padding at the end of the first chunk, followed by more data.
	early := base64.StdEncoding.EncodeToString(data[:decodeChunk/4*3-1]) + enc
	bad := []byte(enc)
	bad[2*decodeChunk+10] = '*'
	tests := []struct {
		name    string
		in      string
		max     int64
		want    []byte
		wantErr error
	}{
		{"chunks", enc, 1 << 30, data, nil},
		{"line breaks", wrapped.String(), 1 << 30, data, nil},
		{"empty", "", 10, nil, nil},
		{"exactly max", enc, int64(len(data)), data, nil},
		{"over max", enc, int64(len(data)) - 1, nil, &tooLargeError{}},
		{"bad byte in a later chunk", string(bad), 1 << 30, nil, errBadBase64},
		{"padding before the end", early, 1 << 30, nil, errBadBase64},
		{"not strict", "aGk=" + "aR==", 1 << 30, nil, errBadBase64},
	}
	// The request's bytes, and a spool read in pieces of any size.
	sources := map[string]func(string, int64, func([]byte) error) (int64, error){
		"bytes": func(in string, max int64, sink func([]byte) error) (int64, error) {
			return decodeBase64([]byte(in), max, sink)
		},
		"one byte reads": func(in string, max int64, sink func([]byte) error) (int64, error) {
			return decodeBase64From(iotest.OneByteReader(strings.NewReader(in)), max, sink)
		},
		"half reads": func(in string, max int64, sink func([]byte) error) (int64, error) {
			return decodeBase64From(iotest.HalfReader(strings.NewReader(in)), max, sink)
		},
	}
	for _, tt := range tests {
		for sname, decode := range sources {
			t.Run(tt.name+"/"+sname, func(t *testing.T) {
				var got bytes.Buffer
				n, err := decode(tt.in, tt.max, func(b []byte) error { got.Write(b); return nil })
				if tt.wantErr != nil {
					var tl *tooLargeError
					if _, isTL := tt.wantErr.(*tooLargeError); isTL && !errors.As(err, &tl) || !isTL && !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil || n != int64(len(tt.want)) || !bytes.Equal(got.Bytes(), tt.want) {
					t.Fatalf("= %d bytes, %v; want %d bytes", n, err, len(tt.want))
				}
			})
		}
	}
}

// TestFileWriteContentForms checks that the fast path (content used from
// the request bytes) and the encoding/json path write the same bytes.
func TestFileWriteContentForms(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	h := s.Handlers()[protocol.MethodFileWrite]
	data := make([]byte, 200<<10)
	rand.NewChaCha8([32]byte{2}).Read(data)
	b64 := base64.StdEncoding.EncodeToString(data)
	path := filepath.Join(ft.allowed, "out")
	tests := []struct {
		name   string
		params string
		want   []byte
		code   int
	}{
		{"plain base64", `{"path":"` + path + `","encoding":"base64","content":"` + b64 + `"}`, data, 0},
		{"content first", `{"content":"` + b64 + `","encoding":"base64","path":"` + path + `"}`, data, 0},
		{"escaped slashes", `{"path":"` + path + `","encoding":"base64","content":"` + strings.ReplaceAll(b64, "/", `\/`) + `"}`, data, 0},
		{"plain utf8", `{"path":"` + path + `","content":"h\u00e9llo"}`, []byte("héllo"), 0},
		{"raw utf8", `{"path":"` + path + `","content":"héllo"}`, []byte("héllo"), 0},
		{"content twice", `{"path":"` + path + `","content":"YQ==","encoding":"base64","content":"Yg=="}`, nil, protocol.CodeInvalidParams},
		{"unknown field", `{"path":"` + path + `","content":"YQ==","bogus":1}`, nil, protocol.CodeInvalidParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(path)
			var r protocol.FileWriteResult
			_, perr := call(t, h, tt.params)
			if tt.code != 0 {
				if perr == nil || perr.Code != tt.code {
					t.Fatalf("error %v, want code %d", perr, tt.code)
				}
				if _, err := os.Stat(path); err == nil {
					t.Fatal("a refused write created the file")
				}
				return
			}
			mustCall(t, h, tt.params, &r)
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, tt.want) || r.BytesWritten != int64(len(tt.want)) {
				t.Fatalf("file %d bytes (%v), bytes_written %d; want %d bytes", len(got), err, r.BytesWritten, len(tt.want))
			}
		})
	}
}

// TestFileReadBase64Chunks reads files around the encoder's chunk size,
// where padding must appear only at the very end, in memory and streamed
// (from streamReadFrom on).
func TestFileReadBase64Chunks(t *testing.T) {
	ft := newFileTree(t)
	s := ft.service(t, nil)
	for _, size := range []int{0, 1, readChunk - 1, readChunk, readChunk + 1, 3*readChunk + 2, streamReadFrom - 1, streamReadFrom, streamReadFrom + readChunk + 2} {
		data := make([]byte, size)
		rand.NewChaCha8([32]byte{3}).Read(data)
		p := filepath.Join(ft.allowed, "chunk")
		mustWrite(t, p, string(data), 0o644)
		var r protocol.FileReadResult
		mustCall(t, s.Handlers()[protocol.MethodFileRead], map[string]any{"path": p, "encoding": "base64"}, &r)
		if r.Content != base64.StdEncoding.EncodeToString(data) || r.SizeBytes != int64(size) || r.Encoding != "base64" {
			t.Errorf("size %d: got %d content bytes, size_bytes %d, encoding %q", size, len(r.Content), r.SizeBytes, r.Encoding)
		}
	}
}
