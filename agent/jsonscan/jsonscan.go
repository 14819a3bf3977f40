// Package jsonscan walks JSON text that has already been validated (for
// example with json.Valid) without decoding it: it finds where strings and
// values end. The server uses it to pick the members of a request and the
// methods to take a file_write's megabytes of content straight from the
// request bytes, both without a copy.
//
// On text that is not valid JSON the results are unspecified but stay within
// the slice: no function reads past len(b) or panics.
package jsonscan

import "bytes"

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// String returns the index just past the string that starts at b[i] (a
// quote), and whether the string contains escape sequences.
func String(b []byte, i int) (end int, escaped bool) {
	i++
	for i < len(b) {
		// IndexByte is vectorised; IndexAny over two bytes is not.
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b), escaped
		}
		k := bytes.IndexByte(b[i:i+j], '\\')
		if k < 0 {
			return i + j + 1, escaped
		}
		escaped = true
		i += k + 2 // a backslash and the escaped byte
	}
	return len(b), escaped
}

// Value returns the index just past the JSON value that starts at b[i].
func Value(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		end, _ := String(b, i)
		return end
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i, _ = String(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
			i++
		}
		return len(b)
	}
}
