package config

import (
	"net"
	"slices"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// AttrRange returns where the value of attribute name is written: at the
// top level of the file when typ is "", else in the first block of type
// typ with exactly these labels (AttrRange("boot", nil, "url"),
// AttrRange("image", []string{"lab"}, "source")). ok is false when the
// file does not write it. Checks made after Load (dls validate --deep)
// report at these ranges, as Load's own errors do.
func (c *Config) AttrRange(typ string, labels []string, name string) (hcl.Range, bool) {
	body := c.body
	if typ != "" {
		b := c.block(typ, labels)
		if b == nil {
			return hcl.Range{}, false
		}
		body = b.Body
	}
	if body == nil {
		return hcl.Range{}, false
	}
	a, ok := body.Attributes[name]
	if !ok {
		return hcl.Range{}, false
	}
	return a.Expr.Range(), true
}

// BlockRange returns the header of the first block of type typ with
// exactly these labels; ok is false when the file has none.
func (c *Config) BlockRange(typ string, labels ...string) (hcl.Range, bool) {
	if b := c.block(typ, labels); b != nil {
		return b.DefRange(), true
	}
	return hcl.Range{}, false
}

// FileRange is the start of the config file, where findings about the
// config as a whole (nothing in it names the culprit) are reported.
func (c *Config) FileRange() hcl.Range {
	pos := hcl.Pos{Line: 1, Column: 1}
	return hcl.Range{Filename: c.File, Start: pos, End: pos}
}

func (c *Config) block(typ string, labels []string) *hclsyntax.Block {
	if c.body == nil {
		return nil
	}
	for _, b := range c.body.Blocks {
		if b.Type == typ && slices.Equal(b.Labels, labels) {
			return b
		}
	}
	return nil
}

// ConfigString evaluates the top-level string attribute name of the
// plugin's config {} body as the host reads the file (env() included),
// without the plugin's schema: ok is false when the body does not set it
// or it is not a string. The host uses it for the few plugin settings it
// must know before the plugin runs (ISCSIPort).
func (p *PluginBlock) ConfigString(name string) (string, bool) {
	if p.ConfigBody == nil {
		return "", false
	}
	content, _, _ := p.ConfigBody.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: name}}})
	a, ok := content.Attributes[name]
	if !ok {
		return "", false
	}
	v, diags := a.Expr.Value(p.ctx)
	if diags.HasErrors() || v.IsNull() || !v.IsWhollyKnown() {
		return "", false
	}
	if v, err := convert.Convert(v, cty.String); err == nil {
		return v.AsString(), true
	}
	return "", false
}

// DefaultISCSIPort is the iSCSI port (RFC 7143): iPXE's default, and the
// port of the iSCSI plugin's default listen address.
const DefaultISCSIPort = 3260

// ISCSIPort is the TCP port the host's boot scripts give machines for
// their iSCSI target: the port of the first protocol "iscsi" block's
// listen address as written, else DefaultISCSIPort (the plugin's default
// listen address has it). A listen address without a usable port is the
// plugin's config error; scripts then say DefaultISCSIPort.
func (c *Config) ISCSIPort() int {
	for _, p := range c.Plugins {
		if p.Kind != KindProtocol || p.Type != "iscsi" {
			continue
		}
		listen, ok := p.ConfigString("listen")
		if !ok {
			return DefaultISCSIPort
		}
		_, port, err := net.SplitHostPort(listen)
		if err != nil {
			return DefaultISCSIPort
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return DefaultISCSIPort
		}
		return int(n)
	}
	return DefaultISCSIPort
}
