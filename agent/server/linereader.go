package server

import (
	"bufio"
	"bytes"
	"io"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// readBufferSize is the size of the buffered reader under the line reader.
// Lines that fit in it are handed out without being copied.
const readBufferSize = 64 << 10

// lineKind tells what lineReader.next found.
type lineKind int

const (
	lineComplete lineKind = iota // a whole line (without its terminator)
	lineOversize                 // a line crossed the limit; its rest is being discarded
	lineRefused                  // the memory budget had no room for the line; its rest is being discarded
)

// lineReader splits a byte stream into lines of at most max bytes.
//
// A line that fits in the read buffer is returned as a slice of that buffer
// (no copy); a longer one is assembled in a scratch buffer that never grows
// beyond max. A line that crosses max is reported once as lineOversize and
// then skipped as it streams in, up to its newline, so its size never
// matters. A protocol.ResyncByte (0xFF) anywhere drops the partial line
// before it, including an oversize line being skipped. Every slice returned
// is valid only until the next call.
//
// The scratch buffer's memory is taken from the budget (if any) before it
// is allocated: a line that cannot get room within the budget's wait is
// reported once as lineRefused (next's error says why) and skipped like an
// oversize line.
type lineReader struct {
	br         *bufio.Reader
	max        int
	scratch    []byte
	discarding bool // inside an oversize line, skipping to its end

	budget  *Budget
	stop    <-chan struct{} // ends a wait for the budget
	charged int64           // bytes of scratch taken from budget

	lineLen int // bytes of the current line so far, spooled ones included

	// Spooling (spool.go), when spoolOn: a line longer than the read
	// buffer is scanned as it streams in, and its params.content string
	// goes to sp instead of scratch.
	spoolOn  bool
	spoolDir string
	scan     spoolScan
	sp       *Spool
	spoolAt  int // where in scratch the spooled text belongs
	keepFn   func([]byte) error
	spoolFn  func([]byte) error
	startFn  func() bool
}

func newLineReader(r io.Reader, max int) *lineReader {
	return newLineReaderSize(r, max, readBufferSize)
}

// newLineReaderSize is newLineReader with a read buffer of size bytes
// (tests make lines longer than it cheaply).
func newLineReaderSize(r io.Reader, max, size int) *lineReader {
	lr := &lineReader{br: bufio.NewReaderSize(r, size), max: max}
	lr.keepFn, lr.spoolFn, lr.startFn = lr.keep, lr.spoolBytes, lr.startSpool
	return lr
}

// next returns the next line without its '\n' (and without a '\r' before
// it). At end of input a final unterminated line is returned as a line; after
// it, next returns the reader's error (io.EOF at a clean end).
func (lr *lineReader) next() ([]byte, lineKind, error) {
	lr.newLine()
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if i := lastResync(chunk); i >= 0 {
			// Resync: whatever came before the 0xFF is not a line.
			lr.newLine()
			lr.discarding = false
			chunk = chunk[i+1:]
		}
		complete := err == nil // chunk ends with '\n'
		if complete {
			chunk = chunk[:len(chunk)-1]
		}
		switch {
		case lr.discarding:
			if complete {
				lr.discarding = false
				lr.newLine()
				continue
			}
		case lr.lineLen+len(chunk) > lr.max:
			// Report it now, however long the rest is; skip the rest
			// on the following calls.
			lr.newLine()
			lr.discarding = !complete
			return nil, lineOversize, nil
		case complete && lr.lineLen == 0:
			return trimCR(chunk), lineComplete, nil // still in the read buffer: no copy
		default:
			if gerr := lr.appendChunk(chunk); gerr != nil {
				lr.newLine()
				lr.release()
				lr.discarding = !complete
				return nil, lineRefused, gerr
			}
			if complete {
				return trimCR(lr.scratch), lineComplete, nil
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			// End of input: a final unterminated line still counts.
			if len(lr.scratch) > 0 && !lr.discarding {
				return trimCR(lr.scratch), lineComplete, nil
			}
			lr.discarding = false
			return nil, lineComplete, err
		}
	}
}

// Growth of the scratch buffer: it doubles up to jumpFrom; a line longer
// than that is almost always a file_write near the size limit, so the buffer
// then grows to the line limit at once (when the limit is at most jumpMax),
// instead of doubling again: every doubling holds the old and the new buffer
// at the same time, so the last one of a 14 MB line would hold 8 + 16 MB.
// Pages of the buffer that the line does not reach are mostly never touched,
// but the memory budget is charged the whole buffer; jumpFrom is 4 MiB so
// that a slow partial line of a few MB holds at most twice its length.
const (
	jumpFrom = 4 << 20
	jumpMax  = 64 << 20
)

// grow makes room for n more bytes in the scratch buffer, never beyond the
// line limit, taking the new buffer's size from the budget first (the old
// buffer's is given back once it is copied).
func (lr *lineReader) grow(n int) error {
	need := len(lr.scratch) + n
	if need <= cap(lr.scratch) {
		return nil
	}
	c := max(2*cap(lr.scratch), need, 4096)
	if c > jumpFrom && lr.max <= jumpMax {
		c = lr.max
	}
	c = min(c, lr.max)
	b, err := lr.budget.Regrow(lr.stop, lr.scratch, &lr.charged, c)
	lr.scratch = b
	return err
}

// newLine forgets the line in progress: its bytes, its scan and a spool
// not handed out.
func (lr *lineReader) newLine() {
	lr.scratch = lr.scratch[:0]
	lr.lineLen = 0
	if lr.sp != nil {
		lr.sp.Close()
		lr.sp = nil
	}
	if lr.spoolOn {
		lr.scan = spoolScan{}
	}
}

// appendChunk adds the next bytes of a line that did not fit in the read
// buffer: to scratch, or, for the content string when spooling, to the
// spool.
func (lr *lineReader) appendChunk(chunk []byte) error {
	lr.lineLen += len(chunk)
	if !lr.spoolOn {
		return lr.keep(chunk)
	}
	return lr.scan.feed(chunk, lr.keepFn, lr.spoolFn, lr.startFn)
}

// keep appends b to scratch.
func (lr *lineReader) keep(b []byte) error {
	if err := lr.grow(len(b)); err != nil {
		return err
	}
	lr.scratch = append(lr.scratch, b...)
	return nil
}

// startSpool creates the spool for the content string that starts here;
// without one (no room on disk, no directory) the string is kept in
// scratch as any other.
func (lr *lineReader) startSpool() bool {
	f, err := createSpoolFile(lr.spoolDir)
	if err != nil {
		return false
	}
	lr.sp = &Spool{f: f}
	lr.spoolAt = len(lr.scratch)
	return true
}

// spoolBytes writes bytes of the content string to the spool.
func (lr *lineReader) spoolBytes(b []byte) error {
	if hasControl(b) {
		lr.sp.bad = true
	}
	return lr.sp.write(b)
}

// takeSpool hands over the spool of the line just returned (nil if none)
// and where in the line its text belongs.
func (lr *lineReader) takeSpool() (*Spool, int) {
	sp := lr.sp
	if sp != nil {
		sp.escaped = lr.scan.escaped
		if lr.scan.spooling {
			sp.bad = true // the line ended inside the string
		}
		lr.sp = nil
	}
	return sp, lr.spoolAt
}

// release drops a scratch buffer that grew large for one long line, so that
// its memory goes back to the heap (and the budget) instead of staying with
// an idle connection.
func (lr *lineReader) release() {
	if lr.sp != nil {
		lr.sp.Close()
		lr.sp = nil
	}
	if cap(lr.scratch) > readBufferSize {
		lr.scratch = nil
		lr.budget.Free(lr.charged)
		lr.charged = 0
	}
}

// close gives back what the scratch buffer holds of the budget.
func (lr *lineReader) close() {
	if lr.sp != nil {
		lr.sp.Close()
		lr.sp = nil
	}
	lr.scratch = nil
	lr.budget.Free(lr.charged)
	lr.charged = 0
}

// detach hands the scratch buffer's memory over to the caller: the next line
// is assembled in a new buffer. It lets a long line's params live on without
// a copy while a handler runs. The caller now owns the returned number of
// budget bytes the buffer was charged.
func (lr *lineReader) detach() int64 {
	lr.scratch = nil
	n := lr.charged
	lr.charged = 0
	return n
}

// lastResync returns the index of the last protocol.ResyncByte in b, or -1.
// bytes.IndexByte is vectorised and LastIndexByte a byte loop: over the
// megabytes of a file_write line, which hold none, look first.
func lastResync(b []byte) int {
	if bytes.IndexByte(b, protocol.ResyncByte) < 0 {
		return -1
	}
	return bytes.LastIndexByte(b, protocol.ResyncByte)
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// lineBuffered reports whether a whole line is already buffered, so that
// next returns without reading.
func (lr *lineReader) lineBuffered() bool {
	n := lr.br.Buffered()
	if n == 0 {
		return false
	}
	buf, _ := lr.br.Peek(n)
	return bytes.IndexByte(buf, '\n') >= 0
}
