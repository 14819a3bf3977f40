package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/kvmmanager/guest-agent/agent/jsonscan"
)

// Spooling: a file_write carries up to max_file_size_bytes of content in one
// JSON string (14 MB of base64 for 10 MiB). Holding the line whole until its
// newline, as every other request is held, would cost the agent that much
// memory per connection. Instead, once a request line outgrows the read
// buffer, the line reader scans it as it streams in; when it reaches the
// string value of the "content" member of the top-level "params" object, it
// writes that string's bytes, as they arrive, to an unnamed temporary file
// (the spool) and keeps only the rest of the line, with the string left
// empty. Once the line is complete, the request is parsed from that rest as
// usual; a method named in Options.Spooled gets the string through
// SpooledContent and decodes it from the file in small chunks. Any other
// method gets its line rebuilt in memory, as if nothing had been spooled.
//
// The line's length limit still applies to the whole line, spooled bytes
// included. Members may come in any order: the spool starts wherever the
// content string is, whatever came before it.

// spoolMember is the params member whose string value is spooled.
const spoolMember = "content"

// Spool is a JSON string value the server took out of a request line while
// it streamed in, kept in an unnamed temporary file. Its bytes are the
// string's raw JSON text between the quotes: escape sequences are still
// escaped (Escaped says whether there are any).
type Spool struct {
	f       *os.File
	n       int64
	escaped bool
	bad     bool // a control byte: the string is not valid JSON
}

// Len returns the length of the string's raw JSON text.
func (s *Spool) Len() int64 { return s.n }

// Escaped reports whether the text contains backslash escapes.
func (s *Spool) Escaped() bool { return s.escaped }

func (s *Spool) size() int64 {
	if s == nil {
		return 0
	}
	return s.n
}

// Reader returns a reader of the whole text, from its start; each call
// returns a new one.
func (s *Spool) Reader() io.Reader { return io.NewSectionReader(s.f, 0, s.n) }

// Close deletes the spool (its file has no name: closing it frees it).
func (s *Spool) Close() error {
	if s == nil || s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	return closeSpoolFile(f)
}

type spoolKey struct{}

// SpooledContent returns the params "content" string of the request whose
// handler got ctx if the server spooled it (the request's params then hold
// "content":"" in its place), and nil otherwise. The spool is deleted once
// the handler has returned.
func SpooledContent(ctx context.Context) *Spool {
	s, _ := ctx.Value(spoolKey{}).(*Spool)
	return s
}

// WithSpool returns a context in which SpooledContent returns sp (for tests
// of handlers called directly).
func WithSpool(ctx context.Context, sp *Spool) context.Context {
	return context.WithValue(ctx, spoolKey{}, sp)
}

// NewSpool writes b to a new spool in dir ("" for the default), for tests of
// handlers that take spooled content.
func NewSpool(dir string, b []byte) (*Spool, error) {
	f, err := createSpoolFile(dir)
	if err != nil {
		return nil, err
	}
	sp := &Spool{f: f}
	if err := sp.write(b); err != nil {
		sp.Close()
		return nil, err
	}
	for _, c := range b {
		if c == '\\' {
			sp.escaped = true
		}
	}
	return sp, nil
}

func (s *Spool) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := s.f.WriteAt(b, s.n)
	s.n += int64(n)
	if err != nil {
		return fmt.Errorf("spool request content: %w", err)
	}
	return nil
}

// bytes reads the whole text back into a new slice.
func (s *Spool) bytes() ([]byte, error) {
	b := make([]byte, s.n)
	if _, err := io.ReadFull(s.Reader(), b); err != nil {
		return nil, fmt.Errorf("read spooled request content: %w", err)
	}
	return b, nil
}

// spoolScan follows the structure of a request line as it streams in, far
// enough to find where the string value of params.content starts and ends.
// It does not validate: the rest of the line is validated once complete,
// and the spooled string's bytes are checked for control bytes here.
type spoolScan struct {
	depth     int
	kinds     [3]byte // container kind ('{' or '[') at depth 1 and 2
	inStr     bool
	esc       bool
	isKey     bool
	key       [8]byte // the start of the current key string
	keyLen    int     // its length so far (may exceed len(key))
	after     byte    // the last structural byte outside strings ('v' after a value)
	inParams  bool    // the depth-2 container is the params object
	keyParams bool    // the last depth-1 key was "params"
	keyContnt bool    // the last key of the params object was "content"
	spooling  bool    // inside the content string
	spooled   bool    // the content string was met (spooled or not)
	escaped   bool    // the spooled string has a backslash escape
}

// feed scans chunk, the next bytes of the line: bytes of the content
// string go to spool, the others to keep. start is called when the
// content string begins; if it reports false the string is kept instead.
func (sc *spoolScan) feed(chunk []byte, keep func([]byte) error, spool func([]byte) error, start func() bool) error {
	for len(chunk) > 0 {
		if sc.spooling {
			end, done := sc.scanString(chunk)
			if err := spool(chunk[:end]); err != nil {
				return err
			}
			chunk = chunk[end:]
			if !done {
				return nil
			}
			// chunk[0] is the closing quote: kept.
			sc.spooling = false
			sc.after = 'v'
			if err := keep(chunk[:1]); err != nil {
				return err
			}
			chunk = chunk[1:]
			continue
		}
		i := 0
		for ; i < len(chunk); i++ {
			if sc.step(chunk[i]) {
				i++
				if err := keep(chunk[:i]); err != nil {
					return err
				}
				chunk = chunk[i:]
				if sc.spooling = start(); !sc.spooling {
					sc.inStr, sc.isKey = true, false // kept as any other string
				}
				i = -1
				break
			}
		}
		if i >= 0 {
			return keep(chunk)
		}
	}
	return nil
}

// scanString finds the end of the spooled string in b: the index of its
// closing quote (done) or len(b).
func (sc *spoolScan) scanString(b []byte) (end int, done bool) {
	i := 0
	if sc.esc {
		if len(b) == 0 {
			return 0, false
		}
		sc.esc = false
		i = 1
	}
	for i < len(b) {
		i += jsonscan.Plain(b[i:])
		if i == len(b) {
			return len(b), false
		}
		if b[i] == '"' {
			return i, true
		}
		sc.escaped = true
		if i+1 >= len(b) {
			sc.esc = true
			return len(b), false
		}
		i += 2
	}
	return len(b), false
}

// step advances over one byte outside the spooled string; it reports true
// when c is the opening quote of the string to spool.
func (sc *spoolScan) step(c byte) bool {
	if sc.inStr {
		switch {
		case sc.esc:
			sc.esc = false
		case c == '\\':
			sc.esc = true
		case c == '"':
			sc.inStr = false
			if sc.isKey {
				k := sc.key[:min(sc.keyLen, len(sc.key))]
				switch {
				case sc.depth == 1:
					sc.keyParams = sc.keyLen == len("params") && string(k) == "params"
				case sc.depth == 2 && sc.inParams:
					sc.keyContnt = sc.keyLen == len(spoolMember) && string(k) == spoolMember
				}
			}
			sc.after = 'v'
			return false
		}
		if sc.isKey {
			if sc.keyLen < len(sc.key) {
				sc.key[sc.keyLen] = c
			}
			sc.keyLen++
		}
		return false
	}
	switch c {
	case ' ', '\t', '\r', '\n':
	case '"':
		obj := sc.depth >= 1 && sc.depth <= 2 && sc.kinds[sc.depth] == '{'
		sc.isKey = obj && (sc.after == '{' || sc.after == ',')
		sc.keyLen = 0
		if !sc.isKey && sc.after == ':' && sc.depth == 2 && sc.inParams && sc.keyContnt && !sc.spooled && sc.kinds[1] == '{' {
			sc.spooled = true
			return true
		}
		sc.inStr = true
	case '{', '[':
		sc.depth++
		if sc.depth == 2 {
			sc.inParams = c == '{' && sc.after == ':' && sc.keyParams && sc.kinds[1] == '{'
			sc.keyContnt = false
		}
		if sc.depth < len(sc.kinds) {
			sc.kinds[sc.depth] = c
		}
		sc.after = c
	case '}', ']':
		if sc.depth > 0 { // more closing than opening: invalid, checked later
			sc.depth--
		}
		sc.after = 'v'
	case ':', ',':
		sc.after = c
	default:
		sc.after = 'v'
	}
	return false
}

// hasControl reports whether b holds a byte JSON forbids unescaped in a
// string (below 0x20). It tests eight bytes at a time: a spooled
// file_write's content is megabytes, and a byte loop was a tenth of the
// agent's time per write.
func hasControl(b []byte) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for len(b) >= 32 {
		w0 := binary.LittleEndian.Uint64(b)
		w1 := binary.LittleEndian.Uint64(b[8:])
		w2 := binary.LittleEndian.Uint64(b[16:])
		w3 := binary.LittleEndian.Uint64(b[24:])
		// A byte x < 0x20 is one whose x - 0x20 borrows into its high
		// bit while x's own high bit is clear (exact for a bound ≤ 0x80;
		// a borrow only ever starts at such a byte).
		if ((w0-0x20*ones)&^w0|(w1-0x20*ones)&^w1|(w2-0x20*ones)&^w2|(w3-0x20*ones)&^w3)&highs != 0 {
			return true
		}
		b = b[32:]
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}
