package tftpd

import (
	"net"
	"path"
	"path/filepath"
	"strings"
)

// localName turns a requested file name into a path relative to root,
// or refuses it. The result always satisfies filepath.IsLocal; opening it
// through an os.Root additionally refuses symlinks that leave root.
//
// An absolute name is read as relative to root, as tftp-hpa -s and
// dnsmasq do: GRUB asks for every file by its absolute path
// ("/grub/grub.cfg", "/files/vmlinuz"), while iPXE and curl drop the
// slash of a tftp:// URI themselves. Names with a ".." element or a NUL
// byte are refused.
func localName(name string) (string, *requestError) {
	switch {
	case name == "":
		return "", badRequest("empty file name")
	case len(name) > MaxNameLen:
		return "", badRequest("file name too long")
	case strings.IndexByte(name, 0) >= 0:
		return "", badRequest("NUL byte in file name")
	}
	rel := strings.TrimLeft(name, "/")
	for elem := range strings.SplitSeq(rel, "/") {
		if elem == ".." {
			return "", accessDenied("path leaves the TFTP root")
		}
	}
	rel = path.Clean("/" + rel)[1:]
	if rel == "" {
		rel = "."
	}
	if !filepath.IsLocal(rel) {
		return "", accessDenied("path leaves the TFTP root")
	}
	return rel, nil
}

func accessDenied(msg string) *requestError {
	return &requestError{code: codeAccess, reason: reasonAccessDenied, msg: msg}
}

func notFound(msg string) *requestError {
	return &requestError{code: codeNotFound, reason: reasonNotFound, msg: msg}
}

// scriptMAC reports whether rel (a localName result) names a per-client
// iPXE script, <dir>/<mac>.ipxe, and returns the MAC in canonical form
// (lower case, colon separated). The MAC may be written with dashes
// (iPXE's ${mac:hexhyp}) or colons (${mac}), in either case. dir "" turns
// scripts off.
func scriptMAC(rel, dir string) (string, bool) {
	if dir == "" {
		return "", false
	}
	base, ok := strings.CutPrefix(rel, dir+"/")
	if !ok || len(base) <= len(".ipxe") || !strings.EqualFold(base[len(base)-len(".ipxe"):], ".ipxe") {
		return "", false
	}
	hw, err := net.ParseMAC(base[:len(base)-len(".ipxe")])
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}
