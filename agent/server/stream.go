package server

import (
	"encoding/json"
	"io"
)

// StreamResult is a result encoded while it is written: the server writes
// the response's head, lets the result write itself into the connection,
// then writes the tail, so that a large result (a file_read's megabytes of
// base64) is never held whole. The handler checks everything that can fail
// before it returns one (file_read reads the file through once); an error
// while writing still ends the line at once, which leaves it invalid JSON
// for the host, and is logged.
//
// In a batch, whose parts are held until the last one is done, the result
// is encoded into memory (its EncodedLen taken from the budget first).
type StreamResult interface {
	// MarshalJSON encodes the whole result into memory (a batch, a test).
	json.Marshaler
	// EncodedLen is an upper bound of the bytes WriteJSON writes.
	EncodedLen() int64
	// WriteJSON writes the result: one JSON value without a newline.
	WriteJSON(w io.Writer) error
	// Close frees what the result holds; the server calls it once the
	// result is written or dropped. It may be called more than once.
	Close() error
}

// errWriter remembers the first error of the connection's writer, so that
// writeStream tells a broken connection from a result that failed.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// writeStream sends head, the streamed result and tail as one line,
// holding the writer meanwhile. It returns the result's own error, if any
// (the line was then cut short).
func (w *writer) writeStream(head []byte, sr StreamResult, tail []byte) error {
	w.mu.Lock()
	for w.busy && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		w.mu.Unlock()
		return nil
	}
	w.busy = true
	w.mu.Unlock()
	ew := &errWriter{w: w.w}
	var serr error
	if _, err := ew.Write(head); err == nil {
		if serr = sr.WriteJSON(ew); serr != nil && ew.err == nil {
			_, _ = ew.Write([]byte{'\n'}) // the line ends here, broken
		} else if ew.err == nil {
			_, _ = ew.Write(tail)
		}
	}
	w.release(ew.err)
	if ew.err != nil {
		return nil
	}
	return serr
}
