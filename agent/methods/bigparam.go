package methods

import (
	"encoding/json"

	"github.com/kvmmanager/guest-agent/agent/jsonscan"
)

// A file_write carries up to max_file_size_bytes of content, base64 in a
// JSON string: 14 MB for 10 MiB. encoding/json would scan that string three
// times (validity, then decode) and copy it into a Go string. Base64 needs no
// JSON escapes, so its value is used straight from the request bytes, and
// only the small rest of the object goes through encoding/json.

// cutPlainString finds the top-level member key of the JSON object obj. If
// its value is a string without escapes, it returns the string's bytes
// (aliasing obj) and a copy of obj with that value emptied; ok is false
// otherwise (absent member, another type, escapes), and obj is to be decoded
// as it is. obj must be valid JSON (the server checked the line).
func cutPlainString(obj []byte, key string) (val, rest []byte, ok bool) {
	i := jsonscan.SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, nil, false
	}
	i++
	for {
		i = jsonscan.SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return nil, nil, false // '}' or malformed
		}
		ks := i
		ke, _ := jsonscan.String(obj, i)
		name := obj[ks+1 : ke-1]
		i = jsonscan.SkipSpace(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return nil, nil, false
		}
		vs := jsonscan.SkipSpace(obj, i+1)
		ve := jsonscan.Value(obj, vs)
		if string(name) == key {
			if vs >= len(obj) || obj[vs] != '"' {
				return nil, nil, false
			}
			_, escaped := jsonscan.String(obj, vs)
			if escaped {
				return nil, nil, false
			}
			rest = make([]byte, 0, len(obj)-(ve-vs)+2)
			rest = append(rest, obj[:vs+1]...)
			rest = append(rest, obj[ve-1:]...)
			return obj[vs+1 : ve-1], rest, true
		}
		i = jsonscan.SkipSpace(obj, ve)
		if i >= len(obj) || obj[i] != ',' {
			return nil, nil, false
		}
		i++
	}
}

// decodeWriteParams decodes file_write params into p. When the content is a
// plain JSON string it is returned as raw (aliasing params) and p.Content
// stays empty; otherwise raw is nil and p.Content holds it.
func decodeWriteParams(params json.RawMessage, p any, content *string) (raw []byte, err error) {
	val, rest, ok := cutPlainString(params, "content")
	if !ok {
		return nil, decodeParams(params, p)
	}
	if err := decodeParams(rest, p); err != nil {
		return nil, err
	}
	if *content != "" {
		return nil, invalidParams(`"content" given twice`)
	}
	return val, nil
}
