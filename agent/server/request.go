package server

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/kvmmanager/guest-agent/agent/jsonscan"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// MaxBatch is the largest number of requests accepted in one batch. A larger
// batch is refused whole with -32600: without a bound, one line of tiny
// invalid elements could make the agent build millions of error responses.
const MaxBatch = 1024

// request is one JSON-RPC request as scanned from a line. Its slices point
// into the line; raw values are validated JSON.
type request struct {
	jsonrpc []byte // raw value of "jsonrpc", nil if absent
	method  []byte // raw value of "method", nil if absent
	params  []byte // raw value of "params", nil if absent
	id      []byte // raw value of "id", nil if absent (a notification)
	dup     string // a member name given twice, if any
	hasDup  bool
}

// scanRequest splits a JSON object into the request members it knows. obj
// must be valid JSON starting with '{'. Unknown members are ignored; a member
// given twice is reported in dup (the request is then invalid: parsers
// disagree on which one wins).
func scanRequest(obj []byte) request {
	var r request
	r.dup, r.hasDup = jsonscan.DuplicateMember(obj)
	i := jsonscan.SkipSpace(obj, 1)
	if obj[i] == '}' {
		return r
	}
	for {
		keyEnd, _ := jsonscan.String(obj, i)
		key := obj[i+1 : keyEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if json.Unmarshal(obj[i:keyEnd], &k) == nil {
				key = []byte(k)
			}
		}
		i = jsonscan.SkipSpace(obj, keyEnd)
		i = jsonscan.SkipSpace(obj, i+1) // ':'
		valEnd := jsonscan.Value(obj, i)
		val := obj[i:valEnd]
		switch string(key) {
		case "jsonrpc":
			r.jsonrpc = val
		case "method":
			r.method = val
		case "params":
			r.params = val
		case "id":
			r.id = val
		}
		i = jsonscan.SkipSpace(obj, valEnd)
		if obj[i] == '}' {
			return r
		}
		i = jsonscan.SkipSpace(obj, i+1) // ','
	}
}

// splitBatch calls fn for each element of a valid JSON array.
func splitBatch(arr []byte, fn func(elem []byte)) {
	i := jsonscan.SkipSpace(arr, 1)
	if arr[i] == ']' {
		return
	}
	for {
		end := jsonscan.Value(arr, i)
		fn(arr[i:end])
		i = jsonscan.SkipSpace(arr, end)
		if arr[i] == ']' {
			return
		}
		i = jsonscan.SkipSpace(arr, i+1)
	}
}

// countBatch returns the number of elements of a valid JSON array, stopping
// once it exceeds limit.
func countBatch(arr []byte, limit int) int {
	n := 0
	i := jsonscan.SkipSpace(arr, 1)
	if arr[i] == ']' {
		return 0
	}
	for n <= limit {
		n++
		i = jsonscan.SkipSpace(arr, jsonscan.Value(arr, i))
		if arr[i] == ']' {
			break
		}
		i = jsonscan.SkipSpace(arr, i+1)
	}
	return n
}

// jsonrpcOK reports whether the raw "jsonrpc" value is the string "2.0".
func jsonrpcOK(raw []byte) bool {
	if string(raw) == `"`+protocol.JSONRPCVersion+`"` {
		return true
	}
	if len(raw) == 0 || raw[0] != '"' || bytes.IndexByte(raw, '\\') < 0 {
		return false
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && s == protocol.JSONRPCVersion
}

// methodName returns the method named by a raw string value. It does not
// allocate for names without escapes.
func methodName(raw []byte) (name []byte, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, false
	}
	return []byte(s), true
}

// idOK reports whether a raw id is one JSON-RPC allows: number, string or
// null. A string id must be valid UTF-8: ids are echoed raw, and invalid
// UTF-8 would make the reply line invalid JSON for strict host parsers.
func idOK(raw []byte) bool {
	switch raw[0] {
	case '"':
		return utf8.Valid(raw)
	case 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// paramsOK reports whether raw params are structured (object or array) or null.
func paramsOK(raw []byte) bool {
	return raw[0] == '{' || raw[0] == '[' || raw[0] == 'n'
}

// printable shortens a method name for an error message and keeps it valid UTF-8.
func printable(name []byte) string {
	const max = 64
	if len(name) > max {
		name = name[:max]
		for len(name) > 0 && !utf8.Valid(name) {
			name = name[:len(name)-1]
		}
		return string(name) + "..."
	}
	return string(name)
}
