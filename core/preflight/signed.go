package preflight

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dls-project/dls/core/config"
	"github.com/hashicorp/hcl/v2"
)

// signedFile is one file of the signed chain a TFTP block serves by a
// fixed name: from its root when the root holds that name, else from the
// path its attribute names.
type signedFile struct {
	name, attr, pkg string
	path            func(tftpBlock) string
	// optional files are noted when missing, not reported: shim runs
	// MokManager only when a key change is pending or a check failed.
	optional bool
}

var signedFiles = []signedFile{
	{name: "shimx64.efi", attr: "shim", pkg: "shim-signed", path: func(t tftpBlock) string { return t.Shim }},
	{name: "grubx64.efi", attr: "grub", pkg: "grub-efi-amd64-signed", path: func(t tftpBlock) string { return t.GRUB }},
	{name: "mmx64.efi", attr: "mok_manager", pkg: "shim-helpers-amd64-signed (with shim-signed)", path: func(t tftpBlock) string { return t.MokManager }, optional: true},
}

// checkSignedBoot: when an image boots through shim, some TFTP block
// serves shim and GRUB (Debian's signed files, where the plugin looks by
// default), answers GRUB's grub.cfg, and serves the image's kernel and
// initrd under files/ (Debian 12's signed GRUB fetches them over TFTP).
func (c *checker) checkSignedBoot() {
	var shimImages []*config.Image
	for _, im := range c.cfg.Images {
		if im.Boot != nil && im.Boot.Loader == config.LoaderShim {
			shimImages = append(shimImages, im)
		}
	}
	if len(shimImages) == 0 {
		return
	}
	first := shimImages[0]
	if len(c.tftp) == 0 {
		c.add(first.DeclRange, "image %q boots through shim, which firmware fetches by TFTP: no protocol \"tftp\" block serves it", first.Name)
		return
	}
	for _, f := range signedFiles {
		c.checkSignedFile(f, first)
	}
	grubOK := false
	for _, t := range c.tftp {
		grubOK = grubOK || t.GRUBConfig != ""
	}
	if !grubOK {
		c.add(c.tftp[0].b.ConfigRange("grub_config"), "image %q boots through shim: GRUB reads /grub/grub.cfg, but grub_config is \"\" in every tftp block (set grub_config = \"grub\")", first.Name)
	}
	for _, im := range shimImages {
		c.checkGRUBFiles(im)
	}
}

// checkSignedFile reports f when no TFTP block serves it.
func (c *checker) checkSignedFile(f signedFile, im *config.Image) {
	var tried []string
	for _, t := range c.tftp {
		if inRoot(c.tftpRoot(t), f.name) == nil {
			return
		}
		p := f.path(t)
		if p == "" {
			tried = append(tried, fmt.Sprintf("%s (%s = \"\")", filepath.Join(c.tftpRoot(t), f.name), f.attr))
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return
		}
		tried = append(tried, p)
	}
	t := c.tftp[0]
	rng := t.b.ConfigRange(f.attr)
	msg := fmt.Sprintf("%s (for image %q, which boots through shim) is missing: looked for %s; install Debian's package %s (apt-get install %s) or set the tftp block's %s",
		f.name, im.Name, strings.Join(tried, ", "), f.pkg, strings.Fields(f.pkg)[0], f.attr)
	if f.optional {
		c.note(rng, "%s; shim runs it only when a key change is pending or a check failed", msg)
		return
	}
	c.out = append(c.out, Finding{Range: rng, Message: msg})
}

// checkGRUBFiles: im's kernel and initrd are under some TFTP block's
// files folder, where GRUB fetches them.
func (c *checker) checkGRUBFiles(im *config.Image) {
	var dirs []string
	for _, t := range c.tftp {
		if t.Files != "" {
			dirs = append(dirs, c.tftpFiles(t))
		}
	}
	if len(dirs) == 0 {
		c.add(c.tftp[0].b.ConfigRange("files"), "image %q boots through shim: Debian's signed GRUB fetches the kernel and initrd over TFTP (it has no HTTP), but no tftp block sets files (set files = %q, the host's boot.files)", im.Name, c.cfg.Boot.Files)
		return
	}
	for _, f := range []struct{ what, path string }{{"kernel", im.Boot.Kernel}, {"initrd", im.Boot.Initrd}} {
		if f.path == "" {
			continue
		}
		found := false
		for _, d := range dirs {
			found = found || inRoot(d, f.path) == nil
		}
		if !found {
			c.add(imageBootRange(c.cfg, im, f.what), "image %q: %s %s is not in the TFTP plugin's files folder %s, where GRUB fetches it", im.Name, f.what, f.path, strings.Join(dirs, ", "))
		}
	}
}

// tftpFiles is the folder a TFTP block serves under files/.
func (c *checker) tftpFiles(t tftpBlock) string {
	if filepath.IsAbs(t.Files) {
		return filepath.Clean(t.Files)
	}
	return filepath.Join(c.cfg.DataDir, "plugins", t.b.Name, t.Files)
}

// imageBootRange is the range of attribute name in im's boot block, or
// the image block's.
func imageBootRange(cfg *config.Config, im *config.Image, name string) hcl.Range {
	if r, ok := cfg.ImageBootAttrRange(im.Name, name); ok {
		return r
	}
	return im.DeclRange
}
