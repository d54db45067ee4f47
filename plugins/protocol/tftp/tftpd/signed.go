package tftpd

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dls-project/dls/sdk/host"
)

// The signed boot chain (Secure Boot): firmware loads shim (signed by the
// Microsoft UEFI CA), shim loads GRUB (signed by Debian) from the same
// server by a name compiled into it, and GRUB reads <prefix>/grub.cfg,
// then fetches the kernel and initrd it is told to, by TFTP: Debian 12's
// signed grubnetx64.efi has no HTTP module. The plugin serves all of it:
//
//	shimx64.efi        SignedBoot.Shim, from Debian's shim-signed
//	grubx64.efi        SignedBoot.GRUB, from grub-efi-amd64-signed
//	mmx64.efi          SignedBoot.MokManager (shim runs it to enroll keys)
//	<grub>/grub.cfg    grubChainConfig: chains to the machine's own config
//	<grub>/mac/<MAC>.cfg  the host's GRUB configuration for that machine
//	                   (Clients.Script, PlatformGRUB), bound to its boot
//	                   like the iPXE scripts
//	files/<path>       SignedBoot.Files: kernels and initrds (the host's
//	                   boot.files), never its clients/ folder
//	<grub>/failed/<token>  not a file: GRUB asks for it when the kernel
//	                   it was told to boot did not boot (refused by
//	                   Secure Boot, or missing); the plugin reports
//	                   boot_failed with the token and answers not found
//
// A file of the same name under root wins over the binaries, grub.cfg and
// files/ (a site's own build); the per-client configs always come from
// the host.

// Names shim and GRUB are fetched by. shim asks for grubx64.efi and
// mmx64.efi beside itself: the names are compiled into it.
const (
	shimName       = "shimx64.efi"
	grubName       = "grubx64.efi"
	mokManagerName = "mmx64.efi"
	filesDir       = "files"
	// grubMACDir holds the per-client GRUB configurations, under the
	// GRUB folder.
	grubMACDir = "mac"
	// grubFailedDir is where GRUB reports a boot it could not start,
	// under the GRUB folder (bootscript's grub configuration names it).
	grubFailedDir = "failed"
)

// Debian's paths of the signed binaries (dpkg -L shim-signed
// shim-helpers-amd64-signed grub-efi-amd64-signed, Debian 12).
const (
	DebianShim       = "/usr/lib/shim/shimx64.efi.signed"
	DebianGRUB       = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"
	DebianMokManager = "/usr/lib/shim/mmx64.efi.signed"
)

// Loaders as file_served reports them (host.AttrLoader).
const (
	loaderShim = "shim"
	loaderGRUB = "grub"
)

// SignedBoot is where the signed chain's files come from.
type SignedBoot struct {
	// Shim, GRUB and MokManager are the files served as shimx64.efi,
	// grubx64.efi and mmx64.efi; "" serves none.
	Shim, GRUB, MokManager string
	// GRUBDir is GRUB's prefix folder, where it reads grub.cfg (Debian's
	// signed GRUB: "grub"); "" serves no GRUB configuration.
	GRUBDir string
	// Files is the folder served under files/ (absolute); "" serves none.
	Files string
}

// grubChainConfig is grub.cfg: GRUB knows no per-machine file of its own,
// so the shared one chains to the machine's, named by the MAC of the
// interface GRUB booted from (net_default_mac: lower-case, colons). A
// machine that booted nothing from it (unknown, unbound, or its kernel
// refused) goes back to its firmware's next boot option.
const grubChainConfig = `# DLS: every machine runs its own configuration, which the host renders
# and serves only to the address its boot is bound to.
configfile $prefix/mac/${net_default_mac}.cfg
echo "DLS: ${net_default_mac} booted nothing: no configuration from $net_default_server, or its kernel was refused"
sleep 10
exit
`

// grubMAC reports whether rel names a per-client GRUB configuration,
// <GRUBDir>/mac/<MAC>.cfg, and returns the MAC in canonical form.
func (b *SignedBoot) grubMAC(rel string) (string, bool) {
	if b.GRUBDir == "" {
		return "", false
	}
	base, ok := strings.CutPrefix(rel, b.GRUBDir+"/"+grubMACDir+"/")
	if !ok || !strings.HasSuffix(base, ".cfg") {
		return "", false
	}
	hw, err := net.ParseMAC(strings.TrimSuffix(base, ".cfg"))
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

// grubFailure reports whether rel is GRUB's report of a failed boot,
// <GRUBDir>/failed/<token>, and returns the token. Only the shape of a
// boot token is accepted (URL-safe base64, bounded): anything else is an
// ordinary file name, not found.
func (b *SignedBoot) grubFailure(rel string) (string, bool) {
	if b.GRUBDir == "" {
		return "", false
	}
	tok, ok := strings.CutPrefix(rel, b.GRUBDir+"/"+grubFailedDir+"/")
	if !ok || len(tok) < 16 || len(tok) > 128 {
		return "", false
	}
	for _, r := range tok {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", false
		}
	}
	return tok, true
}

// reportGRUBFailure tells the host that the boot holding token failed in
// GRUB. The event carries no file name: the name holds the token, which
// the host checks and drops.
func (s *Server) reportGRUBFailure(token string, peer netip.AddrPort) *requestError {
	if s.emit != nil {
		s.emit(host.Event{Type: host.EventBootFailed, Address: peer.Addr().String(), Time: time.Now(), Attrs: map[string]string{
			host.AttrToken: token, host.AttrStage: loaderGRUB, host.AttrRemote: peer.String(), "via": "tftp",
		}})
	}
	return notFound("boot failure reported")
}

// signedFile is what rel names of the signed chain once root has no such
// file: a binary, grub.cfg or a file under files/. ok is false for other
// names (the caller's "not found" stands).
func (s *Server) signedFile(rel string, ev host.Event) (c *content, rerr *requestError, ok bool) {
	b := &s.set.Signed
	switch {
	case rel == shimName && b.Shim != "":
		return s.openSigned(b.Shim, loaderShim, ev)
	case rel == grubName && b.GRUB != "":
		return s.openSigned(b.GRUB, loaderGRUB, ev)
	case rel == mokManagerName && b.MokManager != "":
		return s.openSigned(b.MokManager, "", ev)
	case b.GRUBDir != "" && rel == b.GRUBDir+"/grub.cfg":
		ev.Type = host.EventFileServed
		return &content{r: strings.NewReader(grubChainConfig), size: int64(len(grubChainConfig)), close: func() {}, served: ev}, nil, true
	}
	if b.Files == "" {
		return nil, nil, false
	}
	sub, ok := strings.CutPrefix(rel, filesDir+"/")
	if !ok {
		return nil, nil, false
	}
	if sub == "clients" || strings.HasPrefix(sub, "clients/") {
		// Per-client files go only to the machine's bound address, over
		// the host's HTTP; TFTP has no binding of its own.
		return nil, accessDenied("per-client files are not served over TFTP"), true
	}
	f, size, rerr := openFile(b.Files, sub)
	if rerr != nil {
		return nil, rerr, true
	}
	ev.Type = host.EventFileServed
	return &content{r: f, size: size, close: func() { _ = f.Close() }, served: ev}, nil, true
}

// openSigned opens one of the configured binaries (a path the admin
// named, outside root). loader is the host.AttrLoader of its file_served
// event ("" for none).
func (s *Server) openSigned(path, loader string, ev host.Event) (*content, *requestError, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.logger.Warn("tftp: a signed boot file is missing (install shim-signed and grub-efi-amd64-signed, or set the plugin's path)", "path", path)
			return nil, notFound("file not found"), true
		}
		return nil, openError(err), true
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, accessDenied("not a regular file"), true
	}
	ev.Type = host.EventFileServed
	if loader != "" {
		ev.Attrs[host.AttrLoader] = loader
	}
	return &content{r: f, size: st.Size(), close: func() { _ = f.Close() }, served: ev}, nil, true
}

// openGRUBConfig asks the host for the machine's GRUB configuration; it
// is reported as script_served, like an iPXE script.
func (s *Server) openGRUBConfig(mac string, ev host.Event) (*content, *requestError) {
	if s.clients == nil {
		return nil, notFound("no boot configuration for this machine")
	}
	ctx, cancel := context.WithTimeout(s.ctx, lookupTimeout)
	defer cancel()
	sc, err := s.clients.Script(ctx, host.ScriptQuery{MAC: mac, Peer: ev.Address, Platform: host.PlatformGRUB})
	if err != nil {
		s.logger.Warn("tftp GRUB configuration lookup failed", "mac", mac, "error", err)
		return nil, &requestError{code: codeNotDefined, reason: reasonUnavailable, msg: "boot configuration unavailable, try again"}
	}
	if !sc.Found {
		return nil, notFound("no boot configuration for this machine")
	}
	if s.emit != nil {
		ev.Type, ev.Client, ev.Time = host.EventScriptServed, sc.Client, time.Now()
		s.emit(ev)
	}
	return &content{r: strings.NewReader(sc.Body), size: int64(len(sc.Body)), close: func() {}}, nil
}

// absFiles resolves the files folder against the plugin's data dir.
func absFiles(dir, dataDir string) string {
	if dir == "" || filepath.IsAbs(dir) {
		return dir
	}
	return filepath.Join(dataDir, dir)
}
