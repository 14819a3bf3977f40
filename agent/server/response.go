package server

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// maxPooledBuffer is the largest encode buffer kept for reuse; a buffer that
// grew for one big response (a file_read) is left to the garbage collector.
const maxPooledBuffer = 64 << 10

// encBuf is a reusable response buffer with a JSON encoder writing into it.
type encBuf struct {
	bytes.Buffer
	enc *json.Encoder
}

var encPool = sync.Pool{New: func() any {
	b := new(encBuf)
	b.enc = json.NewEncoder(&b.Buffer)
	b.enc.SetEscapeHTML(false)
	return b
}}

func getBuf() *encBuf { return encPool.Get().(*encBuf) }

func putBuf(b *encBuf) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	encPool.Put(b)
}

var nullID = []byte("null")

// appendResponse appends one response object, without a newline, for the
// request with the raw id (nil for null). err, if not nil, is the error to
// send; otherwise result is encoded. A result that cannot be encoded becomes
// an internal error.
func (b *encBuf) appendResponse(id []byte, result any, perr *protocol.Error) {
	start := b.Len()
	if perr == nil {
		b.WriteString(`{"jsonrpc":"2.0","result":`)
		if err := b.enc.Encode(result); err != nil {
			b.Truncate(start)
			perr = protocol.Errorf(protocol.CodeInternalError, "encode result: %v", err)
		} else {
			b.Truncate(b.Len() - 1) // Encode's newline
		}
	}
	if perr != nil {
		b.WriteString(`{"jsonrpc":"2.0","error":`)
		if err := b.enc.Encode(perr); err != nil {
			// Only Data can fail to encode (a handler's invalid
			// RawMessage); the encoder wrote nothing, so send the rest.
			_ = b.enc.Encode(&protocol.Error{Code: perr.Code, Message: perr.Message})
		}
		b.Truncate(b.Len() - 1)
	}
	b.WriteString(`,"id":`)
	if id == nil {
		id = nullID
	}
	b.Write(id)
	b.WriteByte('}')
}
