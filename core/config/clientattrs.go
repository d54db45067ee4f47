package config

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// upperFirst capitalises an error message that starts a sentence.
func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// extraAddresses decodes a client's extra_addresses: IP addresses (v4 or
// v6, no zone), each error at its element.
func (l *loader) extraAddresses(attrs hcl.Attributes, cl *Client) {
	var raw []string
	a := l.strings(attrs, "extra_addresses", &raw)
	if a == nil {
		return
	}
	for i, s := range raw {
		addr, err := netip.ParseAddr(s)
		if err == nil && addr.Zone() == "" {
			addr = addr.Unmap()
			if !slices.Contains(cl.ExtraAddresses, addr) {
				cl.ExtraAddresses = append(cl.ExtraAddresses, addr)
			}
			continue
		}
		rng := a.Expr.Range()
		if e, ok := a.Expr.(hclsyntax.Expression); ok {
			if el := elementExpr(e, pathSub{index: i}, l.ctx); el != nil {
				rng = el.Range()
			}
		}
		l.diags = append(l.diags, errorAt(rng, `Invalid value for "extra_addresses"`,
			"Element %d: %q is not an IP address such as \"10.0.0.5\" (no zone).", i, s))
	}
}
