package config

import (
	"fmt"
	"net"
	"time"

	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Value formats a schema attribute may ask the host to check.
const (
	formatDuration = "duration"
	formatIP       = "ip"
	formatHostPort = "host_port"
)

// DecodeConfig decodes the plugin's config {} body against the schema the
// plugin declared and returns the JSON to send in Configure: an object of
// attribute values (null when absent without a default), single blocks as
// objects (null when absent) and repeated blocks as arrays.
//
// Absent attributes get the schema's defaults, and values with a format
// are checked. Problems in the body (unknown or missing attributes and
// blocks, wrong types, bad formats) come back as one error of
// "file:line:col: message" lines; a missing config {} block is an empty
// body, reported at the plugin block. A schema the host cannot use (a
// malformed type or default, an unknown format) is the plugin's fault and
// comes back as an error naming the attribute.
func (p *PluginBlock) DecodeConfig(schema *dlsv1.Schema) ([]byte, error) {
	spec, err := objectSpec(schema, "")
	if err != nil {
		return nil, fmt.Errorf("plugin %s: config schema: %w", p.Name, err)
	}
	body := p.configBody()
	val, diags := hcldec.Decode(body, spec, p.ctx)
	diags = append(diags, p.checkFormats(body, schema, val)...)
	if diags.HasErrors() {
		return nil, FormatDiagnostics(diags)
	}
	data, err := ctyjson.SimpleJSONValue{Value: val}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("plugin %s: encode config: %w", p.Name, err)
	}
	return data, nil
}

// objectSpec builds the hcldec spec of a schema; prefix names the block
// in errors.
func objectSpec(s *dlsv1.Schema, prefix string) (hcldec.ObjectSpec, error) {
	spec := hcldec.ObjectSpec{}
	for _, a := range s.GetAttributes() {
		name := prefix + a.GetName()
		if !hclsyntax.ValidIdentifier(a.GetName()) {
			return nil, fmt.Errorf("attribute %q: not a valid name", name)
		}
		if _, dup := spec[a.GetName()]; dup {
			return nil, fmt.Errorf("attribute %q: declared twice", name)
		}
		ty, err := ctyjson.UnmarshalType(a.GetType())
		if err != nil {
			return nil, fmt.Errorf("attribute %q: type %s: %w", name, a.GetType(), err)
		}
		if err := checkFormatType(a.GetFormat(), ty); err != nil {
			return nil, fmt.Errorf("attribute %q: %w", name, err)
		}
		var as hcldec.Spec = &hcldec.AttrSpec{Name: a.GetName(), Type: ty, Required: a.GetRequired()}
		if len(a.GetDefaultJson()) > 0 && !a.GetRequired() {
			def, err := ctyjson.Unmarshal(a.GetDefaultJson(), ty)
			if err != nil {
				return nil, fmt.Errorf("attribute %q: default %s: %w", name, a.GetDefaultJson(), err)
			}
			if err := checkFormatValue(a.GetFormat(), def); err != nil {
				return nil, fmt.Errorf("attribute %q: default: %w", name, err)
			}
			as = &hcldec.DefaultSpec{Primary: as, Default: &hcldec.LiteralSpec{Value: def}}
		}
		spec[a.GetName()] = as
	}
	for _, b := range s.GetBlocks() {
		name := prefix + b.GetName()
		if !hclsyntax.ValidIdentifier(b.GetName()) {
			return nil, fmt.Errorf("block %q: not a valid name", name)
		}
		if _, dup := spec[b.GetName()]; dup {
			return nil, fmt.Errorf("block %q: name already declared", name)
		}
		nested, err := objectSpec(b.GetBlock(), name+".")
		if err != nil {
			return nil, err
		}
		switch b.GetNesting() {
		case dlsv1.NestedBlock_SINGLE:
			spec[b.GetName()] = &hcldec.BlockSpec{TypeName: b.GetName(), Nested: nested, Required: b.GetRequired()}
		case dlsv1.NestedBlock_LIST:
			ls := &hcldec.BlockListSpec{TypeName: b.GetName(), Nested: nested}
			if b.GetRequired() {
				ls.MinItems = 1
			}
			spec[b.GetName()] = ls
		default:
			return nil, fmt.Errorf("block %q: unknown nesting %v", name, b.GetNesting())
		}
	}
	return spec, nil
}

// checkFormatType checks that format is known and applies to ty: a
// string, or a list, set or map of strings.
func checkFormatType(format string, ty cty.Type) error {
	switch format {
	case "":
		return nil
	case formatDuration, formatIP, formatHostPort:
	default:
		return fmt.Errorf("unknown format %q", format)
	}
	if ty.Equals(cty.String) || ((ty.IsListType() || ty.IsSetType() || ty.IsMapType()) && ty.ElementType().Equals(cty.String)) {
		return nil
	}
	return fmt.Errorf("format %q needs a string or a collection of strings, not %s", format, ty.FriendlyName())
}

// checkFormatValue checks a known string value, or each element of a
// collection of strings, against format.
func checkFormatValue(format string, v cty.Value) error {
	if format == "" || !v.IsWhollyKnown() || v.IsNull() {
		return nil
	}
	if v.Type().Equals(cty.String) {
		return checkFormat(format, v.AsString())
	}
	if !v.CanIterateElements() {
		return nil
	}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if err := checkFormatValue(format, e); err != nil {
			return fmt.Errorf("%s: %w", elementName(k), err)
		}
	}
	return nil
}

// checkFormat checks one string against format.
func checkFormat(format, s string) error {
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
		return checkHostPort(s)
	}
	return nil
}

// elementName names a collection element by its key: "element 1" or
// `key "rack"`.
func elementName(k cty.Value) string {
	if k.Type().Equals(cty.String) {
		return fmt.Sprintf("key %q", k.AsString())
	}
	return fmt.Sprintf("element %s", k.AsBigFloat().Text('f', -1))
}

// checkFormats walks body next to its decoded value val and checks the
// attributes that have a format, reporting each bad value at its range
// (the element's, for a list or map written out literally).
func (p *PluginBlock) checkFormats(body hcl.Body, s *dlsv1.Schema, val cty.Value) hcl.Diagnostics {
	bs := &hcl.BodySchema{}
	for _, a := range s.GetAttributes() {
		bs.Attributes = append(bs.Attributes, hcl.AttributeSchema{Name: a.GetName()})
	}
	for _, b := range s.GetBlocks() {
		bs.Blocks = append(bs.Blocks, hcl.BlockHeaderSchema{Type: b.GetName()})
	}
	content, _, _ := body.PartialContent(bs) // problems reported by hcldec

	var diags hcl.Diagnostics
	for _, a := range s.GetAttributes() {
		attr, ok := content.Attributes[a.GetName()]
		if a.GetFormat() == "" || !ok {
			continue
		}
		v := getAttr(val, a.GetName())
		if !v.IsWhollyKnown() || v.IsNull() {
			continue
		}
		if v.Type().Equals(cty.String) {
			if err := checkFormat(a.GetFormat(), v.AsString()); err != nil {
				diags = append(diags, errorAt(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", attr.Name), "%v.", err))
			}
			continue
		}
		expr, _ := attr.Expr.(hclsyntax.Expression)
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			err := checkFormatValue(a.GetFormat(), e)
			if err == nil {
				continue
			}
			rng := attr.Expr.Range()
			if expr != nil {
				rng = p.elementRange(expr, []pathSub{subFor(k)})
			}
			diags = append(diags, errorAt(rng, fmt.Sprintf("Invalid value for %q", attr.Name), "%s: %v.", elementName(k), err))
		}
	}
	for _, b := range s.GetBlocks() {
		i := 0
		for _, blk := range content.Blocks {
			if blk.Type != b.GetName() {
				continue
			}
			bv := getAttr(val, b.GetName())
			if b.GetNesting() == dlsv1.NestedBlock_LIST {
				bv = index(bv, i)
			}
			diags = append(diags, p.checkFormats(blk.Body, b.GetBlock(), bv)...)
			i++
			if b.GetNesting() == dlsv1.NestedBlock_SINGLE {
				break
			}
		}
	}
	return diags
}

// subFor is the path part that selects the collection element with key k.
func subFor(k cty.Value) pathSub {
	if k.Type().Equals(cty.String) {
		key := k.AsString()
		return pathSub{key: &key}
	}
	i, _ := k.AsBigFloat().Int64()
	return pathSub{index: int(i)}
}

// getAttr returns attribute name of the object v, or an unknown value when
// v has no such known attribute (it failed to decode).
func getAttr(v cty.Value, name string) cty.Value {
	if v == cty.NilVal || !v.IsKnown() || v.IsNull() || !v.Type().IsObjectType() || !v.Type().HasAttribute(name) {
		return cty.DynamicVal
	}
	return v.GetAttr(name)
}

// index returns element i of the list v, or an unknown value.
func index(v cty.Value, i int) cty.Value {
	if v == cty.NilVal || !v.IsKnown() || v.IsNull() || !v.Type().IsListType() || i >= v.LengthInt() {
		return cty.DynamicVal
	}
	return v.Index(cty.NumberIntVal(int64(i)))
}
