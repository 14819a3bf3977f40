//go:build !windows

package qga

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kvmmanager/guest-agent/agent/jsonscan"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// Strict decoding of a command's arguments into its qapi.<Command>Args
// struct, with the checks and the error texts of QEMU's QObject input
// visitor: a required member that is absent is "Parameter 'x' is missing",
// a member of the wrong JSON type is "Invalid parameter type for 'x',
// expected: integer", a member the schema does not have is "Parameter 'x' is
// unexpected", a string outside an enum is "Parameter 'x' does not accept
// value 'v'". Nested members are named as QEMU names them ("vcpus[0].online").
//
// A member is optional when its json tag has omitempty. The JSON given is
// already valid (the stream checked it).

// enum is implemented by the schema's enum types.
type enum interface{ QAPIEnum() []string }

var (
	enumType        = reflect.TypeFor[enum]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	rawType         = reflect.TypeFor[json.RawMessage]()
)

// decodeArgs decodes args (nil: no "arguments" member) into dst, a pointer
// to a struct.
func decodeArgs(args []byte, dst any) *Error {
	if len(args) == 0 {
		args = []byte("{}")
	}
	return decodeStruct("", args, reflect.ValueOf(dst).Elem())
}

// member is one member of a JSON object.
type member struct {
	key string
	val []byte
}

// members splits the valid JSON object obj into its members, in order. A
// key given twice is an error, as in QEMU's parser.
func members(obj []byte) ([]member, *Error) {
	var out []member
	i := jsonscan.SkipSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		end, escaped := jsonscan.String(obj, i)
		key := string(obj[i+1 : end-1])
		if escaped {
			if err := json.Unmarshal(obj[i:end], &key); err != nil {
				return nil, errParse("bad key")
			}
		}
		i = jsonscan.SkipSpace(obj, end)
		i = jsonscan.SkipSpace(obj, i+1) // ':'
		vend := jsonscan.Value(obj, i)
		for _, m := range out {
			if m.key == key {
				return nil, errParse("duplicate key")
			}
		}
		out = append(out, member{key: key, val: obj[i:vend]})
		i = jsonscan.SkipSpace(obj, vend)
		if i < len(obj) && obj[i] == ',' {
			i = jsonscan.SkipSpace(obj, i+1)
		}
	}
	return out, nil
}

// elements splits the valid JSON array arr into its elements.
func elements(arr []byte) [][]byte {
	var out [][]byte
	i := jsonscan.SkipSpace(arr, 1)
	for i < len(arr) && arr[i] != ']' {
		end := jsonscan.Value(arr, i)
		out = append(out, arr[i:end])
		i = jsonscan.SkipSpace(arr, end)
		if i < len(arr) && arr[i] == ',' {
			i = jsonscan.SkipSpace(arr, i+1)
		}
	}
	return out
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func decodeStruct(prefix string, obj []byte, v reflect.Value) *Error {
	if len(obj) == 0 || obj[0] != '{' {
		return errType(prefix, "object")
	}
	ms, qerr := members(obj)
	if qerr != nil {
		return qerr
	}
	used := make([]bool, len(ms))
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := strings.Contains(opts, "omitempty")
		idx := -1
		for j, m := range ms {
			if m.key == name {
				idx = j
				break
			}
		}
		if idx < 0 {
			if !optional {
				return errMissing(join(prefix, name))
			}
			continue
		}
		used[idx] = true
		if err := decodeValue(join(prefix, name), ms[idx].val, v.Field(i)); err != nil {
			return err
		}
	}
	for j, m := range ms {
		if !used[j] {
			return errUnexpected(join(prefix, m.key))
		}
	}
	return nil
}

func decodeValue(name string, raw []byte, v reflect.Value) *Error {
	t := v.Type()
	if t == rawType {
		v.SetBytes(bytes.Clone(raw))
		return nil
	}
	if t.Kind() == reflect.Pointer {
		elem := reflect.New(t.Elem())
		if err := decodeValue(name, raw, elem.Elem()); err != nil {
			return err
		}
		v.Set(elem)
		return nil
	}
	if t.Implements(enumType) {
		if raw[0] != '"' {
			return errType(name, "string")
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return errType(name, "string")
		}
		values := v.Interface().(enum).QAPIEnum()
		for _, val := range values {
			if s == val {
				v.SetString(s)
				return nil
			}
		}
		return errEnumValue(name, s)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		err := v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(raw)
		var ev *qapi.EnumValueError
		if errors.As(err, &ev) {
			return errEnumValue(name, ev.Value)
		}
		if err != nil {
			return errType(name, t.Name())
		}
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		if raw[0] != '"' {
			return errType(name, "string")
		}
		if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
			// No escapes: the text between the quotes is the string (raw
			// is valid JSON: no control bytes; invalid UTF-8 is left to
			// encoding/json, which replaces it). A guest-file-write's
			// base64 is copied once.
			v.SetString(string(raw[1 : len(raw)-1]))
			return nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return errType(name, "string")
		}
		v.SetString(s)
	case reflect.Bool:
		switch string(raw) {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			return errType(name, "boolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !isInteger(raw) {
			return errType(name, "integer")
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return errType(name, "integer") // beyond int64: a float to QEMU
		}
		if v.OverflowInt(n) {
			return Errorf("Parameter '%s' expects %s", name, t.Kind())
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !isInteger(raw) {
			return errType(name, "integer")
		}
		n, err := strconv.ParseUint(string(raw), 10, 64)
		if err != nil || v.OverflowUint(n) {
			return Errorf("Parameter '%s' expects %s", name, t.Kind())
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
			return errType(name, "number")
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return errType(name, "number")
		}
		v.SetFloat(f)
	case reflect.Slice:
		if raw[0] != '[' {
			return errType(name, "array")
		}
		elems := elements(raw)
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			if err := decodeValue(name+"["+strconv.Itoa(i)+"]", e, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Struct:
		if raw[0] != '{' {
			return errType(name, "object")
		}
		return decodeStruct(name, raw, v)
	default:
		return Errorf("Parameter '%s': type %s cannot be decoded", name, t)
	}
	return nil
}

// isInteger reports whether b is a JSON number without fraction or
// exponent, which QEMU's lexer reads as an integer.
func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
