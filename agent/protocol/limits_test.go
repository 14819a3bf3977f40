package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestLineLimitFitsMaxFileWrite(t *testing.T) {
	for _, max := range []int64{1, 1000, DefaultMaxFileSize, 256 << 20} {
		p := FileWriteParams{
			Path:        "/" + strings.Repeat("d/", 2000),
			Encoding:    EncodingBase64,
			CreateDirs:  true,
			Permissions: "0644",
		}
		req, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "file_write", "params": p, "id": 1 << 50})
		if err != nil {
			t.Fatal(err)
		}
		// Base64 needs no JSON escapes: the content adds exactly its length.
		n := len(req) + int(4*((max+2)/3))
		if lim := LineLimit(max); n > lim {
			t.Errorf("max_file_size_bytes %d: a base64 file_write line is %d bytes, over the limit %d", max, n, lim)
		}
	}
}
