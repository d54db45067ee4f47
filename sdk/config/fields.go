package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// fieldKind says how a struct field appears in HCL.
type fieldKind int

const (
	attrField      fieldKind = iota // name = value
	blockField                      // struct: one optional (or required) block
	blockPtrField                   // *struct: one optional block, nil when absent
	blockListField                  // []struct or []*struct: a block that may repeat
)

// field is one tagged struct field, checked.
type field struct {
	index    int
	goName   string // Type.Field, for error messages
	name     string // the HCL name
	kind     fieldKind
	required bool
	doc      string
	format   string
	typ      cty.Type     // attributes only
	elem     reflect.Type // blocks: the struct type of the block
}

// Formats the host knows how to check.
const (
	formatDuration = "duration"
	formatIP       = "ip"
	formatHostPort = "host_port"
)

// isDuration reports whether t is time.Duration, which is an attribute
// written as a string rather than a number.
func isDuration(t reflect.Type) bool {
	return t == reflect.TypeFor[time.Duration]()
}

// validName reports whether s is an HCL identifier the host accepts:
// ASCII letters, digits, "_" and "-", not starting with a digit or "-".
func validName(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case (c >= '0' && c <= '9') || c == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return s != ""
}

// fieldsOf checks the tagged fields of struct type t (not its nested
// blocks) and returns them in declaration order.
func fieldsOf(t reflect.Type) ([]field, error) {
	var out []field
	seen := map[string]string{}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("hcl")
		if !ok || tag == "-" {
			continue
		}
		goName := t.String() + "." + sf.Name
		f, err := parseField(sf, tag)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", goName, err)
		}
		f.index = i
		f.goName = goName
		if prev, dup := seen[f.name]; dup {
			return nil, fmt.Errorf("field %s: name %q is already used by field %s", goName, f.name, prev)
		}
		seen[f.name] = goName
		out = append(out, f)
	}
	return out, nil
}

func parseField(sf reflect.StructField, tag string) (field, error) {
	if !sf.IsExported() {
		return field{}, fmt.Errorf("has an hcl tag but is not exported")
	}
	if sf.Anonymous {
		return field{}, fmt.Errorf("embedded structs are not supported; give the field a name")
	}
	name, opt, _ := strings.Cut(tag, ",")
	if !validName(name) {
		return field{}, fmt.Errorf("hcl tag %q: %q is not a valid HCL name (letters, digits, _ and -, not starting with a digit)", tag, name)
	}
	f := field{name: name, doc: sf.Tag.Get("doc"), format: sf.Tag.Get("format")}
	required := sf.Tag.Get("required")
	if required != "" && required != "true" && required != "false" {
		return field{}, fmt.Errorf("required tag %q: want \"true\" or \"false\"", required)
	}
	switch opt {
	case "", "optional":
		if required != "" {
			return field{}, fmt.Errorf("required tag is for blocks; an attribute is required unless its hcl tag says \",optional\"")
		}
		f.kind = attrField
		f.required = opt == ""
		typ, err := attrType(sf.Type)
		if err != nil {
			return field{}, err
		}
		f.typ = typ
		if err := checkFormat(&f, sf.Type); err != nil {
			return field{}, err
		}
	case "block":
		if f.format != "" {
			return field{}, fmt.Errorf("format tag is for attributes, not blocks")
		}
		f.required = required == "true"
		t := sf.Type
		switch {
		case t.Kind() == reflect.Struct:
			f.kind = blockField
			f.elem = t
		case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
			f.kind = blockPtrField
			f.elem = t.Elem()
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
			f.kind = blockListField
			f.elem = t.Elem()
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Pointer && t.Elem().Elem().Kind() == reflect.Struct:
			f.kind = blockListField
			f.elem = t.Elem().Elem()
		default:
			return field{}, fmt.Errorf("a block must be a struct, a pointer to a struct or a slice of structs, not %s", t)
		}
	default:
		return field{}, fmt.Errorf("hcl tag %q: unknown option %q (want \"optional\" or \"block\")", tag, opt)
	}
	return f, nil
}

// attrType returns the cty type of an attribute field.
func attrType(t reflect.Type) (cty.Type, error) {
	if typ, ok := scalarType(t); ok {
		return typ, nil
	}
	switch t.Kind() {
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return cty.NilType, fmt.Errorf("type %s is not supported; use string", t)
		}
		if isDuration(t.Elem()) {
			return cty.NilType, fmt.Errorf("type %s is not supported; use []string with format:\"duration\"", t)
		}
		if et, ok := scalarType(t.Elem()); ok {
			return cty.List(et), nil
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			break
		}
		if isDuration(t.Elem()) {
			return cty.NilType, fmt.Errorf("type %s is not supported; use map[string]string with format:\"duration\"", t)
		}
		if et, ok := scalarType(t.Elem()); ok {
			return cty.Map(et), nil
		}
	case reflect.Struct, reflect.Pointer:
		return cty.NilType, fmt.Errorf("type %s is not an attribute type; a nested block needs hcl:\"name,block\"", t)
	}
	return cty.NilType, fmt.Errorf("type %s is not supported (want string, bool, a number, time.Duration, a slice of those or a map from string to those)", t)
}

func scalarType(t reflect.Type) (cty.Type, bool) {
	if isDuration(t) {
		return cty.String, true
	}
	switch t.Kind() {
	case reflect.String:
		return cty.String, true
	case reflect.Bool:
		return cty.Bool, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return cty.Number, true
	}
	return cty.NilType, false
}

// checkFormat validates the format tag against the field's type and sets
// the implied "duration" format of time.Duration fields.
func checkFormat(f *field, t reflect.Type) error {
	if isDuration(t) {
		if f.format != "" && f.format != formatDuration {
			return fmt.Errorf("format %q does not apply to time.Duration (it is always %q)", f.format, formatDuration)
		}
		f.format = formatDuration
		return nil
	}
	switch f.format {
	case "":
		return nil
	case formatDuration, formatIP, formatHostPort:
	default:
		return fmt.Errorf("unknown format %q (want %q, %q or %q)", f.format, formatDuration, formatIP, formatHostPort)
	}
	if !f.typ.Equals(cty.String) && !f.typ.Equals(cty.List(cty.String)) && !f.typ.Equals(cty.Map(cty.String)) {
		return fmt.Errorf("format %q needs a string, []string or map[string]string field, not %s", f.format, t)
	}
	return nil
}
