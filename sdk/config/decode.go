package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"time"
)

// Decode fills the struct into points to from the config JSON the host
// sends in Configure: an object keyed by the hcl tag names, with durations
// as strings.
//
// Decode starts from what *into already holds, so set the defaults first
// (the same values you passed to Schema). An attribute or single block
// that is absent or null keeps its value; a nil pointer block stays nil. A
// block that may repeat, a slice or a map is replaced as a whole; each new
// block starts from its type's SetDefaults (see Defaulter).
//
// Problems with the values (a wrong type, a number out of range, a bad
// duration, a key the struct does not declare) are returned together as
// Errors, each naming its path ("pool[1].lease_time"). A struct that
// cannot be decoded into (into is not a pointer to a struct, a malformed
// tag) is a programming error and is returned as a plain error.
func Decode(data []byte, into any) error {
	rv := reflect.ValueOf(into)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config decode: want a non-nil pointer to a struct, got %T", into)
	}
	if err := checkStruct(rv.Elem().Type(), map[reflect.Type]bool{}); err != nil {
		return fmt.Errorf("config decode into %s: %w", rv.Elem().Type(), err)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return Errors{Errorf("", "config is not valid JSON: %v", err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Errors{Errorf("", "config is not valid JSON: data after the top-level object")}
	}
	if raw == nil {
		return nil
	}
	obj, ok := raw.(map[string]any)
	if !ok {
		return Errors{Errorf("", "config must be a JSON object, not %s", jsonKind(raw))}
	}
	var errs Errors
	decodeObject(&errs, "", obj, rv.Elem())
	return errs.Err()
}

// checkStruct checks the tags of t and of every block type under it, so
// that a bad tag fails every Decode, not only those that use the block.
func checkStruct(t reflect.Type, visiting map[reflect.Type]bool) error {
	if visiting[t] {
		return fmt.Errorf("block type %s contains itself", t)
	}
	visiting[t] = true
	defer delete(visiting, t)
	fields, err := fieldsOf(t)
	if err != nil {
		return err
	}
	for _, f := range fields {
		if f.kind != attrField {
			if err := checkStruct(f.elem, visiting); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeObject decodes obj into the struct v; prefix is obj's path.
func decodeObject(errs *Errors, prefix string, obj map[string]any, v reflect.Value) {
	fields, _ := fieldsOf(v.Type()) // checked by checkStruct
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.name] = true
		raw, ok := obj[f.name]
		if !ok || raw == nil {
			continue
		}
		path := joinPath(prefix, f.name)
		fv := v.Field(f.index)
		switch f.kind {
		case attrField:
			decodeAttr(errs, path, raw, fv)
		case blockField:
			decodeBlock(errs, path, raw, fv)
		case blockPtrField:
			target := newBlock(f.elem)
			if !fv.IsNil() {
				target.Elem().Set(fv.Elem())
			}
			if decodeBlock(errs, path, raw, target.Elem()) {
				fv.Set(target)
			}
		case blockListField:
			decodeBlockList(errs, path, raw, fv)
		}
	}
	var unknown []string
	for k := range obj {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs.Add(Errorf(joinPath(prefix, k), "unexpected setting %q: the plugin does not declare it", k))
	}
}

// decodeBlock decodes one block object into the struct v, keeping the
// values of absent attributes. It reports whether raw was an object.
func decodeBlock(errs *Errors, path string, raw any, v reflect.Value) bool {
	obj, ok := raw.(map[string]any)
	if !ok {
		errs.Add(Errorf(path, "must be a block (a JSON object), not %s", jsonKind(raw)))
		return false
	}
	decodeObject(errs, path, obj, v)
	return true
}

func decodeBlockList(errs *Errors, path string, raw any, v reflect.Value) {
	list, ok := raw.([]any)
	if !ok {
		errs.Add(Errorf(path, "must be a list of blocks (a JSON array), not %s", jsonKind(raw)))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(list), len(list))
	ptr := v.Type().Elem().Kind() == reflect.Pointer
	for i, item := range list {
		elem := out.Index(i)
		if ptr {
			elem.Set(newBlock(v.Type().Elem().Elem()))
			elem = elem.Elem()
		} else {
			elem.Set(newBlock(v.Type().Elem()).Elem())
		}
		ipath := indexPath(path, i)
		if item == nil {
			errs.Add(Errorf(ipath, "must be a block (a JSON object), not null"))
			continue
		}
		decodeBlock(errs, ipath, item, elem)
	}
	if len(list) == 0 {
		out = reflect.Zero(v.Type())
	}
	v.Set(out)
}

// decodeAttr decodes one attribute value into v, or adds an error and
// leaves v alone.
func decodeAttr(errs *Errors, path string, raw any, v reflect.Value) {
	t := v.Type()
	switch {
	case isDuration(t):
		s, ok := raw.(string)
		if !ok {
			errs.Add(Errorf(path, "must be a duration string such as \"90s\", not %s", jsonKind(raw)))
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			errs.Add(Errorf(path, "%q is not a duration such as \"90s\" or \"1h30m\"", s))
			return
		}
		v.SetInt(int64(d))
	case t.Kind() == reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			errs.Add(Errorf(path, "must be a list, not %s", jsonKind(raw)))
			return
		}
		out := reflect.MakeSlice(t, len(list), len(list))
		before := len(*errs)
		for i, item := range list {
			decodeScalar(errs, indexPath(path, i), item, out.Index(i))
		}
		if len(*errs) == before {
			v.Set(out)
		}
	case t.Kind() == reflect.Map:
		obj, ok := raw.(map[string]any)
		if !ok {
			errs.Add(Errorf(path, "must be a map, not %s", jsonKind(raw)))
			return
		}
		out := reflect.MakeMapWithSize(t, len(obj))
		before := len(*errs)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			elem := reflect.New(t.Elem()).Elem()
			decodeScalar(errs, keyPath(path, k), obj[k], elem)
			out.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), elem)
		}
		if len(*errs) == before {
			v.Set(out)
		}
	default:
		decodeScalar(errs, path, raw, v)
	}
}

// decodeScalar decodes a string, bool or number into v.
func decodeScalar(errs *Errors, path string, raw any, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			errs.Add(Errorf(path, "must be a string, not %s", jsonKind(raw)))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			errs.Add(Errorf(path, "must be true or false, not %s", jsonKind(raw)))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		n, ok := raw.(json.Number)
		if !ok {
			errs.Add(Errorf(path, "must be a number, not %s", jsonKind(raw)))
			return
		}
		if err := setNumber(v, n); err != nil {
			errs.Add(Errorf(path, "%v", err))
		}
	default:
		// fieldsOf admits no other kinds.
		errs.Add(Errorf(path, "cannot decode into %s", v.Type()))
	}
}

// setNumber stores n in the int, uint or float v, refusing fractions for
// integers and values v cannot hold.
func setNumber(v reflect.Value, n json.Number) error {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(string(n), v.Type().Bits())
		if err != nil || v.OverflowFloat(f) {
			return fmt.Errorf("%s is out of range for %s", n, v.Type())
		}
		v.SetFloat(f)
		return nil
	}
	f, _, err := big.ParseFloat(string(n), 10, 256, big.ToNearestEven)
	if err != nil {
		return fmt.Errorf("%q is not a number", string(n))
	}
	if !f.IsInt() {
		return fmt.Errorf("%s is not a whole number", n)
	}
	switch v.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, acc := f.Uint64()
		if acc != big.Exact || v.OverflowUint(u) {
			return fmt.Errorf("%s is out of range for %s (0 to %d)", n, v.Type(), maxUint(v.Type().Bits()))
		}
		v.SetUint(u)
	default:
		i, acc := f.Int64()
		if acc != big.Exact || v.OverflowInt(i) {
			lo := int64(-1) << (v.Type().Bits() - 1)
			return fmt.Errorf("%s is out of range for %s (%d to %d)", n, v.Type(), lo, -(lo + 1))
		}
		v.SetInt(i)
	}
	return nil
}

func maxUint(bits int) uint64 {
	if bits >= 64 {
		return ^uint64(0)
	}
	return uint64(1)<<bits - 1
}

// jsonKind names the JSON type of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func keyPath(path, key string) string {
	return path + "[" + strconv.Quote(key) + "]"
}
