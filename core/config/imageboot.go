package config

import "github.com/hashicorp/hcl/v2"

// ImageBootAttrRange returns where attribute name of image's boot {}
// block is written (ImageBootAttrRange("lab", "kernel")); ok is false
// when the file does not write it. Checks made after Load report there.
func (c *Config) ImageBootAttrRange(image, name string) (hcl.Range, bool) {
	b := c.block("image", []string{image})
	if b == nil || b.Body == nil {
		return hcl.Range{}, false
	}
	for _, nb := range b.Body.Blocks {
		if nb.Type != "boot" || nb.Body == nil {
			continue
		}
		if a, ok := nb.Body.Attributes[name]; ok {
			return a.Expr.Range(), true
		}
	}
	return hcl.Range{}, false
}
