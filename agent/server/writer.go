package server

import (
	"io"
	"net"
	"sync"
)

// maxPending bounds the bytes of reply lines queued behind a write in
// progress by requests that do not wait for their line to be written (the
// read loop's inline replies). Past it the read loop stops answering inline
// and its requests take the normal path, whose writers wait: a host that
// never reads cannot make the agent buffer more than this.
const maxPending = 256 << 10

// maxCoalesce is the longest line copied into the pending buffer; a longer
// one (a file_read's megabytes) is written from where it is, alone.
const maxCoalesce = 64 << 10

// writer serialises a connection's reply lines and coalesces them: while one
// goroutine (the holder) is writing, lines that become ready are appended to
// a pending buffer, and the holder writes them all with one more call before
// it lets go. Lines are whole and never interleave.
type writer struct {
	w     io.Writer
	try   func([]byte) (int, error) // writes what fits without blocking; nil if w cannot
	onErr func(error)               // called once, on the first write error
	spawn func(func())              // runs a write in a goroutine of its own

	mu      sync.Mutex
	cond    sync.Cond // signalled when busy drops or a pending batch is written
	busy    bool      // a holder is writing
	pending []byte    // lines waiting for the holder
	spare   []byte
	queued  uint64 // number of the batch pending collects
	flushed uint64 // number of the last batch written
	err     error
}

// tryWriter is a writer that can also write what fits without waiting
// (rawio's): the read loop then writes its inline replies itself.
type tryWriter interface {
	TryWrite(b []byte) (int, error)
}

func newWriter(w io.Writer, onErr func(error), spawn func(func())) *writer {
	wr := &writer{w: w, onErr: onErr, spawn: spawn, queued: 1}
	wr.cond.L = &wr.mu
	if t, ok := w.(tryWriter); ok {
		wr.try = t.TryWrite
	}
	return wr
}

// write sends one line made of parts and returns once it has been written
// (or dropped after a write error).
func (w *writer) write(parts ...[]byte) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	w.mu.Lock()
	for w.busy && w.err == nil {
		if n <= maxCoalesce {
			for _, p := range parts {
				w.pending = append(w.pending, p...)
			}
			batch := w.queued
			for w.flushed < batch && w.err == nil {
				w.cond.Wait()
			}
			w.mu.Unlock()
			return
		}
		w.cond.Wait()
	}
	if w.err != nil {
		w.mu.Unlock()
		return
	}
	w.busy = true
	w.mu.Unlock()
	var err error
	if len(parts) == 1 {
		_, err = w.w.Write(parts[0])
	} else {
		bufs := net.Buffers(parts) // one writev where w supports it
		_, err = bufs.WriteTo(w.w)
	}
	w.release(err)
}

// release ends a holder's turn: it writes what was queued meanwhile, then
// lets go. err is the holder's own write error, if any.
func (w *writer) release(err error) {
	w.mu.Lock()
	for {
		if err != nil {
			w.fail(err)
			w.mu.Unlock()
			return
		}
		if len(w.pending) == 0 {
			w.busy = false
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		buf, batch := w.pending, w.queued
		w.pending, w.spare = w.spare[:0], nil
		w.queued++
		w.mu.Unlock()
		_, err = w.w.Write(buf)
		w.mu.Lock()
		w.flushed = batch
		if cap(buf) <= 2*maxPending {
			w.spare = buf[:0]
		}
		w.cond.Broadcast()
	}
}

// fail records the first write error; w.mu is held.
func (w *writer) fail(err error) {
	first := w.err == nil
	if first {
		w.err = err
	}
	w.busy = false
	w.pending = nil
	w.cond.Broadcast()
	if first {
		w.onErr(err)
	}
}

// room reports whether lines may still be posted without waiting: no write
// error, and the pending buffer plus extra bytes within maxPending.
func (w *writer) room(extra int) bool {
	w.mu.Lock()
	ok := w.err == nil && (!w.busy || len(w.pending)+extra < maxPending)
	w.mu.Unlock()
	return ok
}

// post sends the lines in b without ever waiting for the peer: if a write is
// in progress they are queued behind it; otherwise they are written with a
// non-blocking write where the connection has one, and whatever does not
// fit (or everything, without one) is written by a goroutine of its own. It
// reports whether b was handed to that goroutine, which puts it back in the
// pool when done; otherwise the caller keeps b.
func (w *writer) post(b *encBuf) (handed bool) {
	w.mu.Lock()
	if w.err != nil {
		w.mu.Unlock()
		return false
	}
	if w.busy {
		w.pending = append(w.pending, b.Bytes()...)
		w.mu.Unlock()
		return false
	}
	w.busy = true
	w.mu.Unlock()
	if w.try != nil {
		n, err := w.try(b.Bytes())
		if err != nil {
			w.release(err) // does not wait: err is set
			return false
		}
		if n == b.Len() {
			w.mu.Lock()
			if len(w.pending) == 0 {
				w.busy = false
				w.cond.Broadcast()
				w.mu.Unlock()
				return false
			}
			w.mu.Unlock()
			w.spawn(func() { w.release(nil) })
			return false
		}
		b.Next(n)
	}
	w.spawn(func() {
		_, err := w.w.Write(b.Bytes())
		putBuf(b)
		w.release(err)
	})
	return true
}

// failed returns the first write error.
func (w *writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
