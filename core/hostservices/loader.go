package hostservices

import (
	"context"
	"errors"
	"fmt"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
)

// loaderCache holds the loaders of the images read while one change of
// the client table is turned into decisions: a snapshot of many clients
// reads each image once.
type loaderCache map[string]string

// loaderOf is Decision.Loader for a client of image: host.LoaderShim when
// the image's boot profile boots EFI x64 through shim, "" (iPXE)
// otherwise, an image the store does not hold included (its clients
// cannot boot anyway). cache may be nil.
func (s *Services) loaderOf(ctx context.Context, image string, cache loaderCache) (string, error) {
	if s.images == nil || image == "" {
		return "", nil
	}
	if l, ok := cache[image]; ok {
		return l, nil
	}
	img, err := s.images.GetImage(ctx, image)
	switch {
	case errors.Is(err, store.ErrNotFound):
		img = store.Image{}
	case err != nil:
		return "", fmt.Errorf("image %s: %w", image, err)
	}
	l := ""
	if img.Boot.UsesShim() {
		l = host.LoaderShim
	}
	if cache != nil {
		cache[image] = l
	}
	return l, nil
}

// setLoader puts client c's loader in d, a decision for a DHCP query
// from arch; an EFI x64 machine of a shim client gets shim as its boot
// file, for plugins that read BootFile only.
func (s *Services) setLoader(ctx context.Context, d *host.Decision, c store.Client, arch uint16) error {
	l, err := s.loaderOf(ctx, c.Image, nil)
	if err != nil {
		return err
	}
	d.Loader = l
	if l == host.LoaderShim && shimArch(arch) {
		d.BootFile = host.ShimBootFile
	}
	return nil
}

// shimArch reports whether DHCP option 93 value arch is one Debian's
// signed shim runs on: EFI x64 (7, and 9, which firmware sends for it
// too) and their HTTP boot variants (16, 17).
func shimArch(arch uint16) bool {
	switch arch {
	case 7, 9, 16, 17:
		return true
	}
	return false
}

// loaderMachine names the machine of a boot loader's file_served event
// (shim or GRUB over TFTP, which knows only the requester's address) by
// the MAC whose boot that address is bound to, so that the boot session
// records its shim and grub stages. Other events, and addresses bound to
// no boot (proxy mode binds at the first script, after the loaders),
// pass unchanged.
func (s *Services) loaderMachine(ctx context.Context, e host.Event) host.Event {
	if e.Type != host.EventFileServed || e.Attrs[host.AttrLoader] == "" || e.MAC != "" || e.Client != "" {
		return e
	}
	a, ok := peerAddr(e.Address)
	if !ok {
		return e
	}
	if mac, ok := s.bindings(ctx).MACAt(a); ok {
		e.MAC = mac
	}
	return e
}
