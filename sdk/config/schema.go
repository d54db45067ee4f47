package config

import (
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"time"

	"github.com/dls-project/dls/sdk/proto/dlsv1"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Schema describes the config struct v points to, for the host. v must be a
// pointer to a struct whose fields carry hcl tags (see the package
// documentation); a nil pointer of the right type describes a struct with
// no defaults.
//
// The values already in *v are the defaults: every attribute field that is
// not its zero value (not empty, for slices and maps) is sent as the
// attribute's default, and the host fills it in when dls.hcl leaves the
// attribute out. Set the defaults, then describe:
//
//	cfg := Config{LeaseTime: time.Hour, Mode: "full"}
//	schema, err := config.Schema(&cfg)
//
// A single block's fields have their defaults in the field's value, like the
// top struct's; a block that may repeat (a slice field), or a pointer
// field left nil, gets them from its type's SetDefaults method (see
// Defaulter). A required attribute (an hcl tag without ",optional") must be
// zero: a default would never be used.
//
// Schema returns an error naming the Go field when a tag is malformed or a
// field's type is not supported. The error does not depend on the config an
// admin writes, so a unit test that calls Schema catches it.
func Schema(v any) (*dlsv1.Schema, error) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.Type().Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("config schema: want a pointer to a struct, got %T", v)
	}
	t := rv.Type().Elem()
	val := reflect.Zero(t)
	if !rv.IsNil() {
		val = rv.Elem()
	}
	s, err := schemaOf(val, map[reflect.Type]bool{})
	if err != nil {
		return nil, fmt.Errorf("config schema of %s: %w", t, err)
	}
	return s, nil
}

// schemaOf describes the struct value v; visiting holds the block types
// being described further up, to refuse a block that contains itself.
func schemaOf(v reflect.Value, visiting map[reflect.Type]bool) (*dlsv1.Schema, error) {
	t := v.Type()
	if visiting[t] {
		return nil, fmt.Errorf("block type %s contains itself", t)
	}
	visiting[t] = true
	defer delete(visiting, t)

	fields, err := fieldsOf(t)
	if err != nil {
		return nil, err
	}
	s := &dlsv1.Schema{}
	for _, f := range fields {
		fv := v.Field(f.index)
		switch f.kind {
		case attrField:
			a, err := attribute(f, fv)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.goName, err)
			}
			s.Attributes = append(s.Attributes, a)
		case blockField, blockPtrField, blockListField:
			b, err := nestedBlock(f, fv, visiting)
			if err != nil {
				return nil, err
			}
			s.Blocks = append(s.Blocks, b)
		}
	}
	return s, nil
}

func attribute(f field, fv reflect.Value) (*dlsv1.Attribute, error) {
	typ, err := ctyjson.MarshalType(f.typ)
	if err != nil {
		return nil, fmt.Errorf("encode type: %w", err)
	}
	a := &dlsv1.Attribute{
		Name:     f.name,
		Type:     typ,
		Required: f.required,
		Doc:      f.doc,
		Format:   f.format,
	}
	if isEmpty(fv) {
		return a, nil
	}
	plain := toPlain(fv)
	if f.required {
		return nil, fmt.Errorf("attribute %q is required but has the default %v; make it optional (hcl:\"%s,optional\") or leave it zero", f.name, plain, f.name)
	}
	if err := checkFormatDeep(f.format, plain); err != nil {
		return nil, fmt.Errorf("default value: %w", err)
	}
	def, err := json.Marshal(plain)
	if err != nil {
		return nil, fmt.Errorf("encode default value: %w", err)
	}
	a.DefaultJson = def
	return a, nil
}

func nestedBlock(f field, fv reflect.Value, visiting map[reflect.Type]bool) (*dlsv1.NestedBlock, error) {
	b := &dlsv1.NestedBlock{Name: f.name, Doc: f.doc, Required: f.required}
	var defaults reflect.Value
	switch f.kind {
	case blockField:
		defaults = fv
	case blockPtrField:
		if fv.IsNil() {
			defaults = newBlock(f.elem).Elem()
		} else {
			defaults = fv.Elem()
		}
	case blockListField:
		b.Nesting = dlsv1.NestedBlock_LIST
		defaults = newBlock(f.elem).Elem()
	}
	nested, err := schemaOf(defaults, visiting)
	if err != nil {
		return nil, err
	}
	b.Block = nested
	return b, nil
}

// Defaulter is implemented (with a pointer receiver) by a block's struct
// type that has defaults of its own. Schema and Decode call SetDefaults on
// every new block: each block of a slice field (a block that may repeat)
// and a pointer field that is nil. A field of struct type, and the top
// struct, take their defaults from the values already there instead.
//
//	func (p *Pool) SetDefaults() { p.LeaseTime = time.Hour }
type Defaulter interface {
	SetDefaults()
}

// newBlock returns a pointer to a new block of struct type t, with the
// defaults of t's SetDefaults method if it has one.
func newBlock(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if d, ok := p.Interface().(Defaulter); ok {
		d.SetDefaults()
	}
	return p
}

// isEmpty reports whether an attribute field holds no default.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// toPlain converts an attribute value into what encoding/json writes as the
// host expects: strings, bools, json.Number, []any and map[string]any.
// Durations become their String form; named types lose any MarshalJSON.
func toPlain(v reflect.Value) any {
	if isDuration(v.Type()) {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return json.Number(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return json.Number(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		return json.Number(strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits()))
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = toPlain(v.Index(i))
		}
		return out
	case reflect.Map:
		out := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			out[iter.Key().String()] = toPlain(iter.Value())
		}
		return out
	}
	// fieldsOf admits no other kinds.
	return nil
}

// checkFormatDeep checks a plain default value (a string, or a list or map
// of strings) against format, the way the host checks values in dls.hcl.
func checkFormatDeep(format string, v any) error {
	switch v := v.(type) {
	case string:
		return checkFormatValue(format, v)
	case []any:
		for _, e := range v {
			if err := checkFormatDeep(format, e); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, e := range v {
			if err := checkFormatDeep(format, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkFormatValue applies one of the formats the host checks.
func checkFormatValue(format, s string) error {
	switch format {
	case formatDuration:
		if _, err := time.ParseDuration(s); err != nil {
			return fmt.Errorf("%q is not a duration such as \"90s\" or \"1h30m\"", s)
		}
	case formatIP:
		if net.ParseIP(s) == nil {
			return fmt.Errorf("%q is not an IP address", s)
		}
	case formatHostPort:
		_, port, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("%q is not a host:port address: %w", s, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
		}
	}
	return nil
}
