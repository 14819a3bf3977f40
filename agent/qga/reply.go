//go:build !windows

package qga

import (
	"io"
	"sync"
)

// reply is what handle returns: a whole line, or the head and tail of a
// line around a result that writes its own encoding piece by piece
// (guest-file-read's base64 data, never held whole). The zero reply writes
// nothing (a success of a command without success response).
type reply struct {
	line []byte         // the whole line, or the head before body
	body streamedReturn // nil: line is the whole reply
	tail []byte         // after body: the id and the end of the line
}

// streamedReturn is a command result that encodes itself, exactly as
// encoding/json would, into a chunkWriter.
type streamedReturn interface {
	writeJSON(cw *chunkWriter)
}

// chunkSize is the size of the writes of a streamed reply.
const chunkSize = 256 << 10

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

// writeTo writes the reply to w.
func (r reply) writeTo(w io.Writer) error {
	if r.body == nil {
		if r.line == nil {
			return nil
		}
		_, err := w.Write(r.line)
		return err
	}
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	cw := &chunkWriter{w: w, buf: (*bp)[:0]}
	cw.write(r.line)
	r.body.writeJSON(cw)
	cw.write(r.tail)
	return cw.flush()
}

// chunkWriter collects a reply in a fixed buffer and writes it each time
// the buffer is full; the first error stops it.
type chunkWriter struct {
	w   io.Writer
	buf []byte
	err error
}

// write appends p, writing out full buffers.
func (c *chunkWriter) write(p []byte) {
	for len(p) > 0 && c.err == nil {
		n := copy(c.buf[len(c.buf):cap(c.buf)], p)
		c.buf, p = c.buf[:len(c.buf)+n], p[n:]
		if len(c.buf) == cap(c.buf) {
			c.flush()
		}
	}
}

// free returns the unused room of the buffer, writing it out first when
// less than min bytes are left.
func (c *chunkWriter) free(min int) []byte {
	if cap(c.buf)-len(c.buf) < min {
		c.flush()
	}
	return c.buf[len(c.buf):cap(c.buf)]
}

// wrote records that n bytes were put into the room free returned.
func (c *chunkWriter) wrote(n int) { c.buf = c.buf[:len(c.buf)+n] }

// flush writes what is buffered.
func (c *chunkWriter) flush() error {
	if c.err == nil && len(c.buf) > 0 {
		_, c.err = c.w.Write(c.buf)
	}
	c.buf = c.buf[:0]
	return c.err
}
