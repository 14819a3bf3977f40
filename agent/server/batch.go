package server

import (
	"bytes"
	"sync"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// batch collects the responses of one batch request. Its response line is
// written when the last of its calls finishes, and the calls' AfterResponse
// hooks run after that.
type batch struct {
	c       *conn
	mu      sync.Mutex
	pending int     // running calls, plus one for the dispatching read loop
	parts   []bpart // one per element; nil for notifications
	calls   []*call
	size    int   // bytes in parts so far
	hold    *Hold // the batch's memory budget: its line, its calls' reservations, its parts
}

// bpart is one element's response: buf, or for a large raw result (a
// file_read) buf as the head, raw written from where it is, then tail. A
// raw result is not copied into the batch reply: it was reserved by its
// handler and is written with writev.
type bpart struct {
	buf  *encBuf
	raw  []byte
	tail []byte
}

func (p bpart) size() int { return p.buf.Len() + len(p.raw) + len(p.tail) }

// batch dispatches the elements of a JSON array.
func (c *conn) batch(arr []byte, owned bool, hold *Hold) {
	switch n := countBatch(arr, MaxBatch); {
	case n == 0:
		hold.Release()
		c.reply(nil, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: empty batch"))
		return
	case n > MaxBatch:
		hold.Release()
		c.reply(nil, protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: a batch may hold at most %d requests", MaxBatch))
		return
	}
	if hold == nil {
		hold = c.s.budget.NewHold()
	}
	b := &batch{c: c, pending: 1, hold: hold}
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
			cl.hold = c.s.budget.NewHold()
			b.mu.Lock()
			if !cl.notify {
				cl.part = len(b.parts)
				b.parts = append(b.parts, bpart{})
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
	b.parts = append(b.parts, bpart{buf: buf})
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
//
// An encoded reply's bytes are taken from the memory budget (a raw result
// was reserved by its handler); one that finds no room at once is replaced
// by a short error too.
func (b *batch) finish(cl *call, result any, perr *protocol.Error) {
	var p bpart
	if sr, ok := result.(StreamResult); ok {
		result, perr = b.materialize(sr, perr, cl.notify)
	}
	if !cl.notify {
		p.buf = getBuf()
		if raw, ok := result.(RawResult); ok && perr == nil && len(raw) > rawResultInline {
			head, tail := responseParts(cl.id)
			p.buf.Write(head)
			p.raw, p.tail = raw, tail[:len(tail)-1] // no newline inside the batch
		} else {
			p.buf.appendResponse(cl.id, result, perr)
			if n := p.buf.Len(); n > maxPooledBuffer && !b.hold.TryTake(int64(n)) {
				putBuf(p.buf)
				p.buf = getBuf()
				p.buf.appendResponse(cl.id, nil, budgetProtocolError(&BudgetError{Need: int64(n), Limit: b.c.s.budget.Limit()}))
			}
		}
	}
	b.mu.Lock()
	if !cl.notify {
		if limit := b.c.s.maxLine; perr == nil && b.size+p.size() > limit {
			n := p.size()
			putBuf(p.buf)
			result = nil
			p = bpart{buf: getBuf()}
			p.buf.appendResponse(cl.id, nil, protocol.Errorf(protocol.CodeInvalidRequest,
				"invalid request: its reply (%d bytes) does not fit in the batch reply limit of %d bytes; "+
					"the request ran, send it on its own to get its reply", n, limit))
		}
		b.parts[cl.part] = p
		b.size += p.size()
	}
	if p.raw != nil {
		// The raw result stays until the batch is written: so does its
		// memory. Any other reservation ends with the handler.
		b.hold.add(cl.hold.detach())
	}
	cl.hold.Release()
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
		// Small parts are joined in one buffer; a raw result is written
		// from where it is (writev), never copied.
		segs := make([][]byte, 0, 3)
		out := getBuf()
		var outs []*encBuf
		flush := func() {
			if out.Len() > 0 {
				segs = append(segs, out.Bytes())
				outs = append(outs, out)
				out = getBuf()
			}
		}
		out.WriteByte('[')
		for i, p := range b.parts {
			if i > 0 {
				out.WriteByte(',')
			}
			if p.buf.Len() > maxPooledBuffer {
				// A large encoded reply: written from its own buffer.
				flush()
				segs = append(segs, p.buf.Bytes())
				outs = append(outs, p.buf)
			} else {
				out.Write(p.buf.Bytes())
				putBuf(p.buf)
			}
			if p.raw != nil {
				flush()
				segs = append(segs, p.raw)
				out.Write(p.tail)
			}
		}
		out.WriteString("]\n")
		flush()
		putBuf(out)
		b.parts = nil
		b.c.write(segs...)
		for _, o := range outs {
			putBuf(o)
		}
	}
	b.hold.Release()
	for _, cl := range b.calls {
		cl.runHooks()
	}
}

// materialize encodes a streamed result into memory for the batch's reply,
// its size taken from the batch's hold first (at once or not at all).
func (b *batch) materialize(sr StreamResult, perr *protocol.Error, notify bool) (any, *protocol.Error) {
	defer sr.Close()
	if notify || perr != nil {
		return nil, perr
	}
	// One that cannot fit in the batch reply is not encoded at all; like
	// an encoded reply, one that finds no room at once is refused.
	n := sr.EncodedLen()
	b.mu.Lock()
	over, limit := int64(b.size)+n > int64(b.c.s.maxLine), b.c.s.maxLine
	b.mu.Unlock()
	if over {
		return nil, protocol.Errorf(protocol.CodeInvalidRequest,
			"invalid request: its reply (%d bytes) does not fit in the batch reply limit of %d bytes; "+
				"the request ran, send it on its own to get its reply", n, limit)
	}
	if !b.hold.TryTake(n) {
		return nil, budgetProtocolError(&BudgetError{Need: n, Limit: b.c.s.budget.Limit()})
	}
	buf := bytes.NewBuffer(make([]byte, 0, n))
	if err := sr.WriteJSON(buf); err != nil {
		return nil, asProtocolError(err)
	}
	return RawResult(buf.Bytes()), nil
}
