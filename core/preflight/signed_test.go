package preflight

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// shimImage is an image booting through shim, appended to labConfig
// (its lines start at 28: line 1 is data_dir).
const shimImage = `storage "dir" "local" {}
image "debian" {
  storage = "local"
  source  = %q
  boot {
    loader = "shim"
    kernel = "debian/vmlinuz"
    initrd = "debian/initrd.img"
  }
}
`

// TestSignedBootFiles: for an image with loader = "shim", --deep says
// which of the signed chain's files the TFTP plugin cannot serve: shim
// and GRUB at their attributes (MokManager as a note), grub_config off,
// no files folder, and a kernel that is not in it at the image's kernel.
func TestSignedBootFiles(t *testing.T) {
	root := ipxeDir(t, "undionly.kpxe", "snponly.efi")
	src := filepath.Join(t.TempDir(), "debian.img")
	if err := os.WriteFile(src, []byte("disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := loaded(t, fmt.Sprintf(labConfig, root)+fmt.Sprintf(shimImage, src))
	signed := t.TempDir()
	shim, grub := filepath.Join(signed, "shimx64.efi.signed"), filepath.Join(signed, "grubnetx64.efi.signed")
	files := t.TempDir()
	tftp := func(extra string) map[string]string {
		p := labPlugins(root)
		p["tftp"] = fmt.Sprintf(`{"listen":"192.168.77.1:69","root":%q%s}`, root, extra)
		return p
	}
	full := fmt.Sprintf(`,"shim":%q,"grub":%q,"mok_manager":%q,"grub_config":"grub","files":%q`, shim, grub, filepath.Join(signed, "mmx64.efi.signed"), files)

	// Nothing installed, nothing copied.
	want(t, check(t, cfg, lab(), tftp(full)),
		fmt.Sprintf(`18:3: shimx64.efi (for image "debian", which boots through shim) is missing: looked for %s; install Debian's package shim-signed (apt-get install shim-signed) or set the tftp block's shim`, shim),
		fmt.Sprintf(`18:3: grubx64.efi (for image "debian", which boots through shim) is missing: looked for %s; install Debian's package grub-efi-amd64-signed (apt-get install grub-efi-amd64-signed) or set the tftp block's grub`, grub),
		fmt.Sprintf(`18:3: note: mmx64.efi (for image "debian", which boots through shim) is missing: looked for %s; install Debian's package shim-helpers-amd64-signed (with shim-signed) (apt-get install shim-helpers-amd64-signed) or set the tftp block's mok_manager; shim runs it only when a key change is pending or a check failed`, filepath.Join(signed, "mmx64.efi.signed")),
		fmt.Sprintf(`34:14: image "debian": kernel debian/vmlinuz is not in the TFTP plugin's files folder %s, where GRUB fetches it`, files),
		fmt.Sprintf(`35:14: image "debian": initrd debian/initrd.img is not in the TFTP plugin's files folder %s, where GRUB fetches it`, files))

	// Installed (shim, GRUB, MokManager at their paths; grubx64.efi
	// copied into the root instead), the kernel and initrd in files.
	for _, p := range []string{shim, filepath.Join(signed, "mmx64.efi.signed"), filepath.Join(files, "debian", "vmlinuz"), filepath.Join(files, "debian", "initrd.img"), filepath.Join(root, "grubx64.efi")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want(t, check(t, cfg, lab(), tftp(full)))

	// No GRUB configuration, no files folder.
	want(t, check(t, cfg, lab(), tftp(fmt.Sprintf(`,"shim":%q,"grub":%q,"mok_manager":"","grub_config":"","files":""`, shim, grub))),
		`18:3: note: mmx64.efi (for image "debian", which boots through shim) is missing: looked for `+filepath.Join(root, "mmx64.efi")+` (mok_manager = ""); install Debian's package shim-helpers-amd64-signed (with shim-signed) (apt-get install shim-helpers-amd64-signed) or set the tftp block's mok_manager; shim runs it only when a key change is pending or a check failed`,
		`18:3: image "debian" boots through shim: GRUB reads /grub/grub.cfg, but grub_config is "" in every tftp block (set grub_config = "grub")`,
		fmt.Sprintf(`18:3: image "debian" boots through shim: Debian's signed GRUB fetches the kernel and initrd over TFTP (it has no HTTP), but no tftp block sets files (set files = %q, the host's boot.files)`, cfg.Boot.Files))

	// No image through shim: nothing of this is looked at.
	cfg = loaded(t, fmt.Sprintf(labConfig, root))
	want(t, check(t, cfg, lab(), tftp(`,"shim":"","grub":"","grub_config":"","files":""`)))
}
