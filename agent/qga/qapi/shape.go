package qapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// CheckShape reports whether the JSON value raw has the shape of the Go
// schema type of v (a value or pointer of that type): every member of an
// object is one the schema names, every required member is present, and
// every value has the schema's JSON type (an 'int' is an integer, an enum
// one of its values). Tests use it to hold replies, ours and qemu-ga's,
// against the schema.
func CheckShape(raw []byte, v any) error {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return checkShape("return", raw, t)
}

func checkShape(where string, raw []byte, t reflect.Type) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return fmt.Errorf("%s: empty", where)
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if e, ok := reflect.New(t).Elem().Interface().(interface{ QAPIEnum() []string }); ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s: %s, want a %s string", where, raw, t.Name())
		}
		for _, val := range e.QAPIEnum() {
			if s == val {
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not a %s", where, s, t.Name())
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			return fmt.Errorf("%s: %s is not a %s: %v", where, raw, t.Name(), err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if raw[0] != '{' {
			return fmt.Errorf("%s: %.40s, want an object (%s)", where, raw, t.Name())
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		known := map[string]bool{}
		if err := checkFields(where, members, t, known); err != nil {
			return err
		}
		var unknown []string
		for k := range members {
			if !known[k] {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return fmt.Errorf("%s: members %q are not in %s", where, unknown, t.Name())
		}
		return nil
	case reflect.Slice:
		if raw[0] != '[' {
			return fmt.Errorf("%s: %.40s, want an array", where, raw)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		for i, e := range elems {
			if err := checkShape(fmt.Sprintf("%s[%d]", where, i), e, t.Elem()); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if raw[0] != '"' {
			return fmt.Errorf("%s: %.40s, want a string", where, raw)
		}
	case reflect.Bool:
		if s := string(raw); s != "true" && s != "false" {
			return fmt.Errorf("%s: %.40s, want a boolean", where, raw)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !isInteger(raw) {
			return fmt.Errorf("%s: %.40s, want an integer", where, raw)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !isInteger(raw) || raw[0] == '-' {
			return fmt.Errorf("%s: %.40s, want an unsigned integer", where, raw)
		}
	case reflect.Float32, reflect.Float64:
		var f float64
		if raw[0] == '"' || json.Unmarshal(raw, &f) != nil {
			return fmt.Errorf("%s: %.40s, want a number", where, raw)
		}
	default:
		return fmt.Errorf("%s: cannot check Go type %s", where, t)
	}
	return nil
}

// checkFields checks the members of struct t (embedded pointer structs, the
// variants of a union, are inline).
func checkFields(where string, members map[string]json.RawMessage, t reflect.Type, known map[string]bool) error {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if err := checkFields(where, members, et, known); err != nil {
				return err
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		known[name] = true
		val, ok := members[name]
		if !ok {
			if !strings.Contains(opts, "omitempty") {
				return fmt.Errorf("%s: required member %q of %s is missing", where, name, t.Name())
			}
			continue
		}
		if err := checkShape(where+"."+name, val, f.Type); err != nil {
			return err
		}
	}
	return nil
}
