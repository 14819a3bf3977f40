// Package jsonscan walks JSON text that has already been validated (for
// example with json.Valid) without decoding it: it finds where strings and
// values end. The server uses it to pick the members of a request and the
// methods to take a file_write's megabytes of content straight from the
// request bytes, both without a copy.
//
// On text that is not valid JSON the results are unspecified but stay within
// the slice: no function reads past len(b) or panics.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

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

// Plain returns the length of the longest prefix of b that holds no quote
// and no backslash: inside a string, the bytes that end nothing and escape
// nothing, which a scanner can take at once. IndexByte is vectorised; a
// loop over both bytes, or IndexAny, is not.
func Plain(b []byte) int {
	q := bytes.IndexByte(b, '"')
	if q < 0 {
		q = len(b)
	}
	if k := bytes.IndexByte(b[:q], '\\'); k >= 0 {
		return k
	}
	return q
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

// Members calls fn with the name (unescaped) and the raw value of each
// member of the JSON object that starts at b[0], in order, until fn returns
// false. b must be valid JSON.
func Members(b []byte, fn func(name string, val []byte) bool) {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return
	}
	i = SkipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		ke, escaped := String(b, i)
		name := unquote(b[i:ke], escaped)
		i = SkipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return
		}
		vs := SkipSpace(b, i+1)
		ve := Value(b, vs)
		if !fn(name, b[vs:ve]) {
			return
		}
		i = SkipSpace(b, ve)
		if i >= len(b) || b[i] != ',' {
			return
		}
		i = SkipSpace(b, i+1)
	}
}

// DuplicateMember returns the first member name that occurs more than once
// in the JSON object b (names compared after unescaping, so "a" and "\u0061"
// are the same member), and whether there is one. b must be valid JSON.
func DuplicateMember(b []byte) (string, bool) {
	// Every request is checked: its few members, with names that need no
	// unescaping, are compared in place, without allocating. Escapes or
	// more members take the general way.
	var names [16][]byte
	n := 0
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", false
	}
	i = SkipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		ke, escaped := String(b, i)
		if escaped || n == len(names) || ke < i+2 {
			return duplicateMember(b)
		}
		name := b[i+1 : ke-1]
		for _, m := range names[:n] {
			if bytes.Equal(m, name) {
				return string(name), true
			}
		}
		names[n] = name
		n++
		i = SkipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return "", false
		}
		i = SkipSpace(b, Value(b, SkipSpace(b, i+1)))
		if i >= len(b) || b[i] != ',' {
			return "", false
		}
		i = SkipSpace(b, i+1)
	}
	return "", false
}

// duplicateMember is DuplicateMember for any object: names unescaped, any
// number of members.
func duplicateMember(b []byte) (string, bool) {
	var small []string
	var seen map[string]bool
	dup, found := "", false
	Members(b, func(name string, _ []byte) bool {
		if seen == nil && len(small) < 16 {
			for _, n := range small {
				if n == name {
					dup, found = name, true
					return false
				}
			}
			small = append(small, name)
			return true
		}
		if seen == nil {
			seen = make(map[string]bool, 2*len(small))
			for _, n := range small {
				seen[n] = true
			}
		}
		if seen[name] {
			dup, found = name, true
			return false
		}
		seen[name] = true
		return true
	})
	return dup, found
}

// unquote returns the text of the JSON string s (with its quotes).
func unquote(s []byte, escaped bool) string {
	if !escaped {
		if len(s) < 2 {
			return ""
		}
		return string(s[1 : len(s)-1])
	}
	var out string
	if json.Unmarshal(s, &out) != nil {
		return string(s)
	}
	return out
}
