package preflight

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// checkImages: each image block's source can be read as a file, as its
// storage plugin will read it (a relative source is tried beside the
// config file first, as the host does).
func (c *checker) checkImages() {
	for _, im := range c.cfg.Images {
		if im.Source == "" || strings.Contains(im.Source, "://") {
			continue // a storage plugin of its own kind of source
		}
		rng, ok := c.cfg.AttrRange("image", []string{im.Name}, "source")
		if !ok {
			rng = im.DeclRange
		}
		src := im.Source
		if !filepath.IsAbs(src) {
			if p := filepath.Join(filepath.Dir(c.cfg.File), src); exists(p) {
				src = p
			}
		}
		f, err := os.Open(src)
		if err != nil {
			c.add(rng, "image %q: source %s cannot be read: %v", im.Name, src, unwrapPath(err))
			continue
		}
		fi, err := f.Stat()
		f.Close()
		switch {
		case err != nil:
			c.add(rng, "image %q: source %s: %v", im.Name, src, err)
		case !fi.Mode().IsRegular():
			c.add(rng, "image %q: source %s is not a file (a raw disk image is)", im.Name, src)
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// unwrapPath drops the *PathError's own path, which the message names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// defaultBootFiles are the architectures a DHCP block without boot_files
// is taken to ask for, with the DHCP plugin's built-in file names: PCs,
// BIOS and 64-bit UEFI. Other architectures count only when boot_files
// names them.
var defaultBootFiles = map[string]string{"bios": "undionly.kpxe", "efi_x64": "ipxe.efi"}

// tftpRoot is the folder a TFTP block serves.
func (c *checker) tftpRoot(t tftpBlock) string {
	if filepath.IsAbs(t.Root) {
		return filepath.Clean(t.Root)
	}
	return filepath.Join(c.cfg.DataDir, "plugins", t.b.Name, t.Root)
}

// checkBootFiles: every first-stage file a DHCP block hands out, for the
// architectures it asks for, is served by a TFTP block: a file inside its
// root (the TFTP plugin follows no link out of the root).
func (c *checker) checkBootFiles() {
	for _, d := range c.dhcp {
		files := d.BootFiles
		fromConfig := len(files) > 0
		if !fromConfig {
			files = defaultBootFiles
		}
		archs := make([]string, 0, len(files))
		for a := range files {
			archs = append(archs, a)
		}
		sort.Strings(archs)
		for _, arch := range archs {
			file := files[arch]
			if file == "" || strings.Contains(file, "://") {
				continue // UEFI HTTP boot from a URL
			}
			rng := d.b.DeclRange
			if fromConfig {
				rng = d.b.ConfigRange(fmt.Sprintf("boot_files[%q]", arch))
			}
			what := fmt.Sprintf("%s (the first-stage iPXE build for %s)", file, arch)
			if !fromConfig {
				what = fmt.Sprintf("%s (the DHCP plugin's default for %s; boot_files sets another)", file, arch)
			}
			if len(c.tftp) == 0 {
				c.checkHTTPBootFile(d, rng, arch, file, what)
				continue
			}
			var roots, escapes []string
			found := false
			for _, t := range c.tftp {
				root := c.tftpRoot(t)
				switch err := inRoot(root, file); {
				case err == nil:
					found = true
				case errors.Is(err, errEscapes):
					escapes = append(escapes, root)
				default:
					roots = append(roots, root)
				}
			}
			switch {
			case found:
			case len(escapes) > 0:
				c.add(rng, "%s is a link leading out of TFTP root %s, which the TFTP plugin refuses: name a file inside the root (Debian's package ipxe has snponly.efi and undionly.kpxe as files in /usr/lib/ipxe)", what, escapes[0])
			default:
				c.add(rng, "%s is not in TFTP root %s: install Debian's package ipxe (apt-get install ipxe) and set the tftp block's root = \"/usr/lib/ipxe\", or copy the file there", what, strings.Join(roots, ", "))
			}
		}
	}
}

// checkHTTPBootFile checks file for arch when no TFTP block runs: only
// UEFI HTTP boot clients can then fetch a first stage, over HTTP from
// boot.files (the DHCP plugin's default URL folder, <boot url>/boot/files/),
// so it must be a file there. BIOS has no HTTP boot: its file is only
// noted, as are the PXE clients left without TFTP (a site of UEFI
// machines booting by HTTP needs none).
func (c *checker) checkHTTPBootFile(d dhcpBlock, rng hcl.Range, arch, file, what string) {
	if arch == "bios" || arch == "0" {
		c.note(rng, "%s: no protocol \"tftp\" block serves it, and BIOS firmware has no HTTP boot: BIOS machines cannot boot (UEFI machines can, by UEFI HTTP boot)", what)
		return
	}
	if d.HTTPBootURL != "" {
		return // fetched from http_boot_url, which is not this host's to check
	}
	if c.cfg.Boot.Files == "" {
		c.add(rng, "%s: no protocol \"tftp\" block serves it and boot.files is not set, where UEFI HTTP boot clients would fetch it", what)
		return
	}
	switch err := inRoot(c.cfg.Boot.Files, file); {
	case err == nil:
		c.note(rng, "%s: no protocol \"tftp\" block: served from boot.files %s to UEFI HTTP boot clients only (PXE firmware needs TFTP)", what, c.cfg.Boot.Files)
	case errors.Is(err, errEscapes):
		c.add(rng, "%s is a link leading out of boot.files %s, which /boot/files refuses, and no protocol \"tftp\" block serves it: copy the file into the folder (Debian's /usr/lib/ipxe/ipxe.efi is such a link; snponly.efi there is a file)", what, c.cfg.Boot.Files)
	default:
		c.add(rng, "%s is not in boot.files %s, where UEFI HTTP boot clients fetch it (<boot url>/boot/files/), and no protocol \"tftp\" block serves it: copy it there from Debian's package ipxe (/usr/lib/ipxe)", what, c.cfg.Boot.Files)
	}
}

var errEscapes = errors.New("leads out of the root")

// inRoot reports whether name is a regular file inside root, as the TFTP
// plugin opens it (an os.Root: no link out of it is followed).
func inRoot(root, name string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	fi, err := r.Stat(strings.TrimPrefix(filepath.Clean("/"+name), "/"))
	if err != nil {
		// A name that exists outside the root's rules: tell the link apart.
		if _, serr := os.Stat(filepath.Join(root, name)); serr == nil {
			return errEscapes
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", name)
	}
	return nil
}
