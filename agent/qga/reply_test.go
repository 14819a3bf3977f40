//go:build !windows

package qga

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// maxWriter records the writes it gets and the largest one.
type maxWriter struct {
	bytes.Buffer
	largest int
}

func (w *maxWriter) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	return w.Buffer.Write(p)
}

// A streamed guest-file-read reply is byte for byte what encoding/json
// makes of the schema's return type, written in chunks of at most
// chunkSize (the base64 text is never held whole).
func TestFileReadReplyStreamed(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 5, chunkSize/4*3 - 1, chunkSize / 4 * 3, chunkSize/4*3 + 1, 1<<20 + 7} {
		for _, id := range []string{"", `"x\"y"`, `{"a":[1,2]}`} {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i*131 + i>>8)
			}
			eof := n%2 == 1
			var want bytes.Buffer
			want.WriteString(`{"return":`)
			b, err := json.Marshal(qapi.GuestFileRead{Count: int64(n), BufB64: base64.StdEncoding.EncodeToString(data), EOF: eof})
			if err != nil {
				t.Fatal(err)
			}
			want.Write(b)
			if id != "" {
				want.WriteString(`,"id":` + id)
			}
			want.WriteString("}\n")

			var idRaw []byte
			if id != "" {
				idRaw = []byte(id)
			}
			var tail bytes.Buffer
			writeID(&tail, idRaw)
			tail.WriteString("}\n")
			var w maxWriter
			r := reply{line: []byte(`{"return":`), body: &fileReadReturn{data: data, eof: eof}, tail: tail.Bytes()}
			if err := r.writeTo(&w); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(w.Bytes(), want.Bytes()) {
				t.Errorf("%d bytes, id %q: streamed reply differs from encoding/json's (%d vs %d bytes)", n, id, w.Len(), want.Len())
			}
			if w.largest > chunkSize {
				t.Errorf("%d bytes: a write of %d bytes, more than the chunk (%d)", n, w.largest, chunkSize)
			}
		}
	}
}
