package bench

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
)

// The file workloads move 10 MiB as one base64 JSON string (ours) or a few
// 4 MiB ones (qemu-ga). Run through encoding/json, the client's own
// scanning of those strings would cost more than the agents' work and
// dilute the ratio, so both codecs encode and decode them directly: base64
// has no characters JSON escapes, so the string is the bytes between two
// quotes. Everything else in the messages still goes through
// encoding/json.

// rawParams are request params that append their own JSON object.
type rawParams func(dst []byte) []byte

// appendParams appends params as JSON: rawParams directly, anything else
// through marshal.
func appendParams(dst []byte, params any, marshal func(any) ([]byte, error)) ([]byte, error) {
	if r, ok := params.(rawParams); ok {
		return r(dst), nil
	}
	p, err := marshal(params)
	if err != nil {
		return dst, err
	}
	return append(dst, p...), nil
}

// appendB64Member appends `"key":"<base64 of data>"`.
func appendB64Member(dst []byte, key string, data []byte) []byte {
	dst = strconv.AppendQuote(dst, key)
	dst = append(dst, ':', '"')
	dst = base64.StdEncoding.AppendEncode(dst, data)
	return append(dst, '"')
}

// cutBigString finds the string member key in a JSON line, appends its
// base64-decoded value to dst and returns the line with the value emptied
// (for decoding the remaining small members). The value must be plain
// base64: a backslash in it is an error.
func cutBigString(dst, line []byte, key string) (decoded, rest []byte, err error) {
	needle := strconv.AppendQuote(nil, key)
	i := bytes.Index(line, needle)
	if i < 0 {
		return dst, line, fmt.Errorf("no %q member in reply %.80q", key, line)
	}
	j := i + len(needle)
	for j < len(line) && (line[j] == ' ' || line[j] == ':') {
		j++
	}
	if j >= len(line) || line[j] != '"' {
		return dst, line, fmt.Errorf("member %q of reply is not a string", key)
	}
	start := j + 1
	end := bytes.IndexByte(line[start:], '"')
	if end < 0 {
		return dst, line, fmt.Errorf("member %q of reply is not terminated", key)
	}
	val := line[start : start+end]
	if bytes.IndexByte(val, '\\') >= 0 {
		return dst, line, fmt.Errorf("member %q of reply has escapes, not plain base64", key)
	}
	decoded, err = base64.StdEncoding.AppendDecode(dst, val)
	if err != nil {
		return dst, line, fmt.Errorf("decode member %q: %w", key, err)
	}
	// Splice the value out in place; the line buffer is the client's.
	rest = append(line[:start], line[start+end:]...)
	return decoded, rest, nil
}

// callBig is call for a reply carrying one big base64 string member key:
// its decoded value is appended to dst and returned.
func (c *conn) callBig(method string, params any, key string, result any, dst []byte) ([]byte, error) {
	id := c.nextID
	c.nextID++
	if err := c.send(id, method, params); err != nil {
		return dst, err
	}
	line, err := c.readLine()
	if err != nil {
		return dst, fmt.Errorf("%s: %w", method, err)
	}
	dst, rest, cutErr := cutBigString(dst, line, key)
	got, err := c.codec.parseResponse(rest, result)
	if err != nil {
		return dst, fmt.Errorf("%s: %w", method, err)
	}
	if got != id {
		return dst, fmt.Errorf("%s: reply for id %d, want %d", method, got, id)
	}
	if cutErr != nil {
		return dst, fmt.Errorf("%s: %w", method, cutErr)
	}
	return dst, nil
}
