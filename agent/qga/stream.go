//go:build !windows

package qga

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/kvmmanager/guest-agent/agent/jsonscan"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// Limits of the stream, as QEMU's JSON streamer has them.
const (
	// MaxNesting bounds the depth of nested objects and arrays.
	MaxNesting = 1024
	// DefaultMaxObject bounds one request's bytes when Options.MaxObject is
	// 0 (room for a guest-file-write of the default 10 MiB max_file_size_bytes).
	DefaultMaxObject = 16 << 20
)

// resetByte makes the stream drop any partial input (qemu-ga's convention;
// hosts send it before guest-sync-delimited).
const resetByte = 0xFF

// item is what the stream yields: a complete, valid JSON object or array,
// or the error reply for input that is not one.
type item struct {
	obj     []byte
	err     *Error
	charged int64 // bytes of obj's buffer taken from the memory budget
}

type streamState uint8

const (
	stIdle    streamState = iota // between values: whitespace is skipped
	stValue                      // inside an object or array, stored
	stDiscard                    // inside a value too large or too deep, not stored
	stString                     // a string at top level
	stScalar                     // a number, keyword or junk at top level
)

// stream splits a byte stream into JSON values, as QEMU's json-lexer and
// json-streamer do for qemu-ga: values need not be one per line, several
// may share a line or a value may span reads; a value is complete when its
// brackets balance. Bad input yields one error reply and the stream goes
// on with what follows; 0xFF drops any partial value at once (without a
// reply: see PROTOCOL-qga.md).
type stream struct {
	max   int
	state streamState
	depth int
	inStr bool // inside a string (stValue, stDiscard)
	esc   bool // after a backslash in a string
	buf   []byte
	why   string // stDiscard: the limit that was exceeded

	budget  *server.Budget  // nil: unbounded
	stop    <-chan struct{} // ends a wait for the budget
	charged int64           // bytes of buf's capacity taken from budget
}

// room makes room for one more byte in buf, taking a larger buffer's size
// from the budget before allocating it; false when the budget refused.
func (s *stream) room() bool {
	if len(s.buf) < cap(s.buf) {
		return true
	}
	c := max(2*cap(s.buf), 512)
	if c > 1<<20 {
		c = max(min(c, s.max+1), len(s.buf)+1)
	}
	b, err := s.budget.Regrow(s.stop, s.buf, &s.charged, c)
	s.buf = b
	return err == nil
}

// drop frees the buffer (and its budget) after a value that was refused.
func (s *stream) drop() {
	s.buf = nil
	s.budget.Free(s.charged)
	s.charged = 0
}

// feed consumes p and calls emit for each complete item.
func (s *stream) feed(p []byte, emit func(item)) {
	for i := 0; i < len(p); i++ {
		b := p[i]
		if b == resetByte {
			s.reset()
			continue
		}
		switch s.state {
		case stIdle:
			switch b {
			case ' ', '\t', '\r', '\n':
			case '{', '[':
				s.state, s.depth, s.inStr, s.esc = stValue, 1, false, false
				s.buf = append(s.buf[:0], b)
			case '"':
				s.state, s.esc = stString, false
				s.buf = append(s.buf[:0], b)
			case '}', ']', ',', ':':
				emit(item{err: errParse("expecting value")})
			default:
				s.state = stScalar
				s.buf = append(s.buf[:0], b)
			}
		case stValue, stDiscard:
			if s.inStr && !s.esc {
				// A run of plain string bytes (a guest-file-write's base64
				// text) is copied at once.
				j := plainRun(p[i:])
				if s.state == stValue {
					j = min(j, s.max-len(s.buf), cap(s.buf)-len(s.buf))
				}
				if j > 1 {
					if s.state == stValue {
						s.buf = append(s.buf, p[i:i+j]...)
					}
					i += j - 1
					continue
				}
			}
			if s.state == stValue {
				switch {
				case len(s.buf) >= s.max:
					s.state, s.why = stDiscard, "token size"
					s.drop()
				case !s.room():
					s.state, s.why = stDiscard, "memory budget (max_memory_bytes)"
					s.drop()
				default:
					s.buf = append(s.buf, b)
				}
			}
			if s.inStr {
				switch {
				case s.esc:
					s.esc = false
				case b == '\\':
					s.esc = true
				case b == '"':
					s.inStr = false
				}
				continue
			}
			switch b {
			case '"':
				s.inStr = true
			case '{', '[':
				s.depth++
				if s.depth > MaxNesting && s.state == stValue {
					s.state, s.why = stDiscard, "nesting depth"
					s.drop()
				}
			case '}', ']':
				s.depth--
				if s.depth == 0 {
					emit(s.complete())
				}
			}
		case stString:
			if !s.room() {
				s.state = stIdle
				s.drop()
				emit(item{err: Errorf("JSON string refused: the memory budget (max_memory_bytes) is in use")})
				continue
			}
			s.buf = append(s.buf, b)
			switch {
			case s.esc:
				s.esc = false
			case b == '\\':
				s.esc = true
			case b == '"':
				s.state = stIdle
				emit(s.check(errNotObject))
			}
			if len(s.buf) > s.max {
				s.state = stIdle
				emit(item{err: errParse("JSON token size limit exceeded")})
			}
		case stScalar:
			switch b {
			case ' ', '\t', '\r', '\n', '{', '[', '}', ']', ',', ':', '"':
				emit(s.scalar())
				i-- // the delimiter starts the next token
			default:
				if !s.room() {
					s.state = stIdle
					s.drop()
					emit(item{err: Errorf("JSON token refused: the memory budget (max_memory_bytes) is in use")})
					continue
				}
				s.buf = append(s.buf, b)
				if len(s.buf) > s.max {
					s.state = stIdle
					emit(item{err: errParse("JSON token size limit exceeded")})
				}
			}
		}
	}
}

// plainRun returns the length of the prefix of p that holds no quote,
// backslash or reset byte: bytes inside a string that change no state.
func plainRun(p []byte) int {
	n := jsonscan.Plain(p)
	if r := bytes.IndexByte(p[:n], resetByte); r >= 0 {
		return r
	}
	return n
}

// complete ends an object or array.
func (s *stream) complete() item {
	state := s.state
	s.state = stIdle
	if state == stDiscard {
		return item{err: Errorf("JSON %s limit exceeded", s.why)}
	}
	it := s.check(nil)
	if it.err == nil && s.buf[0] == '[' {
		return item{err: errNotObject}
	}
	if it.err == nil {
		it.obj, it.charged = s.buf, s.charged
		s.buf, s.charged = nil, 0 // handed over: the next value gets a new buffer
	}
	return it
}

// check validates s.buf; a valid value is answered with ifValid (nil: the
// value itself).
func (s *stream) check(ifValid *Error) item {
	if !utf8.Valid(s.buf) {
		return item{err: errParse("invalid UTF-8 sequence in string")}
	}
	if !validJSON(s.buf) {
		// The reason as encoding/json states it.
		if err := json.Unmarshal(s.buf, new(skipValue)); err != nil {
			return item{err: errParse(describeSyntax(err))}
		}
		return item{err: errParse("invalid JSON")}
	}
	return item{err: ifValid}
}

// scalar ends a top-level number or keyword: never a request.
func (s *stream) scalar() item {
	s.state = stIdle
	if json.Valid(s.buf) {
		return item{err: errNotObject}
	}
	return item{err: errParse(fmt.Sprintf("invalid keyword '%s'", printable(s.buf)))}
}

func (s *stream) reset() {
	s.state, s.depth, s.inStr, s.esc = stIdle, 0, false, false
	s.buf = s.buf[:0]
	if cap(s.buf) > 64<<10 {
		s.drop()
	}
}

// skipValue validates JSON without building it.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

func describeSyntax(err error) string {
	if se, ok := err.(*json.SyntaxError); ok {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	return err.Error()
}

// printable quotes at most 64 bytes of b for an error text.
func printable(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string([]rune(string(b)))
}
