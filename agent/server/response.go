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
	if raw, ok := result.(RawResult); ok && perr == nil {
		b.WriteString(`{"jsonrpc":"2.0","result":`)
		b.Write(raw)
	} else if perr == nil {
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

// RawResult is a result a handler has already encoded as JSON: it is sent as
// it is, neither scanned nor re-encoded (a json.RawMessage would be
// validated and compacted, a pass over every byte). The handler vouches
// that it is one valid JSON value without a newline. file_read uses it for
// megabytes of base64.
type RawResult []byte

// MarshalJSON returns r itself, so that encoding/json (in a batch, in tests)
// embeds it as the JSON it is.
func (r RawResult) MarshalJSON() ([]byte, error) { return r, nil }

// rawResultInline is the size up to which a RawResult is
// copied into the response buffer; a larger one (a file_read) is written
// from where it is, between the response's head and tail.
const rawResultInline = maxPooledBuffer

// responseParts returns the head and tail around a large raw result:
// {"jsonrpc":"2.0","result": RAW ,"id":ID}\n
func responseParts(id []byte) (head, tail []byte) {
	if id == nil {
		id = nullID
	}
	tail = make([]byte, 0, len(id)+8)
	tail = append(tail, `,"id":`...)
	tail = append(tail, id...)
	tail = append(tail, "}\n"...)
	return []byte(`{"jsonrpc":"2.0","result":`), tail
}
