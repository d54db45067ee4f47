package storetest

import (
	"errors"
	"testing"

	"github.com/dls-project/dls/core/store"
)

// testImageLoaders: a boot profile's loader is kept ("shim"), "ipxe" is
// stored as "" (the profiles written before loaders existed), and any
// other value is refused with ErrInvalid.
func testImageLoaders(t *testing.T, s store.Store) {
	shim := store.Image{Name: "signed", Storage: "files", Origin: "api", Boot: &store.BootProfile{
		Kernel: "signed/vmlinuz", Initrd: "signed/initrd.img", Confirm: true, Loader: store.LoaderShim,
	}}
	putImage(t, s, shim)
	if got := getImage(t, s, "signed"); got.Boot == nil || got.Boot.Loader != store.LoaderShim || !got.Boot.UsesShim() {
		t.Errorf("GetImage(signed).Boot = %+v, want loader %q", got.Boot, store.LoaderShim)
	}

	ipxe := store.Image{Name: "plain", Storage: "files", Origin: "api", Boot: &store.BootProfile{Kernel: "k", Loader: store.LoaderIPXE}}
	putImage(t, s, ipxe)
	if got := getImage(t, s, "plain"); got.Boot == nil || got.Boot.Loader != "" || got.Boot.UsesShim() {
		t.Errorf("GetImage(plain).Boot = %+v, want loader stored as \"\"", got.Boot)
	}
	if ipxe.Boot.Loader != store.LoaderIPXE {
		t.Errorf("PutImage changed the caller's profile: loader %q", ipxe.Boot.Loader)
	}

	bad := store.Image{Name: "bad", Storage: "files", Origin: "api", Boot: &store.BootProfile{Kernel: "k", Loader: "syslinux"}}
	if err := s.PutImage(t.Context(), bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutImage(loader syslinux) = %v, want ErrInvalid", err)
	}
	if _, err := s.GetImage(t.Context(), "bad"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetImage(bad) after a refused put = %v, want ErrNotFound", err)
	}
}
