package server

import (
	"sync"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// batch collects the responses of one batch request. Its response line is
// written when the last of its calls finishes, and the calls' AfterResponse
// hooks run after that.
type batch struct {
	c       *conn
	mu      sync.Mutex
	pending int       // running calls, plus one for the dispatching read loop
	parts   []*encBuf // one per element; nil for notifications
	calls   []*call
	size    int // bytes in parts so far
}

// batch dispatches the elements of a JSON array.
func (c *conn) batch(arr []byte, owned bool) {
	switch n := countBatch(arr, MaxBatch); {
	case n == 0:
		c.reply(nil, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: empty batch"))
		return
	case n > MaxBatch:
		c.reply(nil, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: a batch may hold at most %d requests", MaxBatch))
		return
	}
	b := &batch{c: c, pending: 1}
	splitBatch(arr, func(elem []byte) {
		var (
			cl   *call
			id   []byte
			perr *protocol.Error
		)
		if elem[0] == '{' {
			cl, id, perr = c.prepare(elem, owned)
		} else {
			perr = protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: a request must be a JSON object")
		}
		switch {
		case perr != nil:
			b.add(id, perr)
		case cl != nil:
			cl.b = b
			b.mu.Lock()
			if !cl.notify {
				cl.part = len(b.parts)
				b.parts = append(b.parts, nil)
			}
			b.pending++
			b.calls = append(b.calls, cl)
			b.mu.Unlock()
			if !c.start(cl) {
				// Reading stopped (shutdown) before this element ran.
				b.finish(cl, nil, protocol.Errorf(protocol.CodeInternalError, "the agent is shutting down"))
			}
		}
	})
	b.done()
}

// add records an error response found while dispatching.
func (b *batch) add(id []byte, perr *protocol.Error) {
	buf := getBuf()
	buf.appendResponse(id, nil, perr)
	b.mu.Lock()
	b.parts = append(b.parts, buf)
	b.size += buf.Len()
	b.mu.Unlock()
}

// finish records a call's response and completes the batch if it was the last.
//
// The batch's reply is bounded like a request line (the server's
// MaxLineBytes): its parts are held until the last element finishes, so
// without a bound a batch of 1024 file_reads of the largest file would pin
// over a thousand big results at once. A result that does not fit any more
// is replaced by a short error; error replies always fit (they are small and
// at most MaxBatch of them).
func (b *batch) finish(cl *call, result any, perr *protocol.Error) {
	var buf *encBuf
	if !cl.notify {
		buf = getBuf()
		buf.appendResponse(cl.id, result, perr)
	}
	b.mu.Lock()
	if buf != nil {
		if limit := b.c.s.maxLine; perr == nil && b.size+buf.Len() > limit {
			n := buf.Len()
			putBuf(buf)
			buf = getBuf()
			buf.appendResponse(cl.id, nil, protocol.Errorf(protocol.CodeInvalidRequest,
				"invalid request: its reply (%d bytes) does not fit in the batch reply limit of %d bytes; "+
					"the request ran, send it on its own to get its reply", n, limit))
		}
		b.parts[cl.part] = buf
		b.size += buf.Len()
	}
	b.mu.Unlock()
	b.done()
}

// done drops one pending reference; the last one writes the response.
func (b *batch) done() {
	b.mu.Lock()
	b.pending--
	last := b.pending == 0
	b.mu.Unlock()
	if !last {
		return
	}
	if len(b.parts) > 0 {
		out := getBuf()
		out.WriteByte('[')
		for i, p := range b.parts {
			if i > 0 {
				out.WriteByte(',')
			}
			out.Write(p.Bytes())
			putBuf(p)
		}
		out.WriteString("]\n")
		b.c.write(out.Bytes())
		putBuf(out)
	}
	for _, cl := range b.calls {
		cl.runHooks()
	}
}
