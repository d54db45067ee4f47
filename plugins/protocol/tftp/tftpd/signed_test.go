package tftpd

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
)

// TestSignedChain serves the Secure Boot chain as shim and GRUB ask for
// it: the signed binaries from their configured paths (a file under root
// wins), grub.cfg chaining to the machine's own configuration, that
// configuration from the host (bound like a script, reported as
// script_served), and kernels under files/ (never its clients/ folder).
// file_served names the loader for the boot session's shim and grub
// stages.
func TestSignedChain(t *testing.T) {
	signed := t.TempDir()
	write := func(dir, name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	shim := write(signed, "shimx64.efi.signed", []byte("MZ shim, signed by the Microsoft UEFI CA"))
	grub := write(signed, "grubnetx64.efi.signed", []byte("MZ GRUB, signed by Debian"))
	files := t.TempDir()
	kernel := make([]byte, 70000) // several blocks
	for i := range kernel {
		kernel[i] = byte(i * 7)
	}
	write(files, "linux/vmlinuz", kernel)
	write(files, "clients/pc-01/secret.txt", []byte("pc-01's own"))

	fh := plugintest.NewFakeHost()
	cfg := "# DLS: pc-01\nlinux /files/linux/vmlinuz\nboot\n"
	fh.SetScript("52:54:00:12:34:56", "pc-01", cfg, "127.0.0.1")
	fh.SetScript("52:54:00:00:00:02", "elsewhere", cfg, "10.9.9.9")
	s := startTFTP(t, map[string]any{
		"shim": shim, "grub": grub, "mok_manager": filepath.Join(signed, "missing.efi"), "files": files,
	}, plugintest.WithHost(fh))

	mustFetch(t, s.addr, "shimx64.efi", []byte("MZ shim, signed by the Microsoft UEFI CA"), fetchOpts{})
	mustFetch(t, s.addr, "grubx64.efi", []byte("MZ GRUB, signed by Debian"), fetchOpts{options: []string{"tsize", "0"}})
	mustFetch(t, s.addr, "/grub/grub.cfg", []byte(grubChainConfig), fetchOpts{})
	mustFetch(t, s.addr, "/grub/mac/52:54:00:12:34:56.cfg", []byte(cfg), fetchOpts{})
	mustFetch(t, s.addr, "/files/linux/vmlinuz", kernel, fetchOpts{options: []string{"blksize", "1024"}})

	for _, tc := range []struct {
		name   string
		code   int
		reason string
	}{
		{"mmx64.efi", 1, reasonNotFound},                           // its configured path is missing
		{"/grub/mac/52:54:00:00:00:02.cfg", 1, reasonNotFound},     // another address's machine
		{"/grub/mac/52:54:00:00:00:99.cfg", 1, reasonNotFound},     // an unknown machine
		{"/files/clients/pc-01/secret.txt", 2, reasonAccessDenied}, // per-client files: HTTP only
		{"/files/clients", 2, reasonAccessDenied},
		{"/files/../files/linux/vmlinuz", 2, reasonAccessDenied},
		{"/files/missing", 1, reasonNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.errorsOf(t, tc.reason)
			res, err := fetch(t, s.addr, tc.name, fetchOpts{})
			if err != nil {
				t.Fatal(err)
			}
			if res.errCode != tc.code {
				t.Fatalf("got error code %d %q (%d bytes), want %d", res.errCode, res.errMsg, len(res.data), tc.code)
			}
			s.h.WaitMetricValue(t, before+1, "dls_tftp_errors_total", tc.reason)
		})
	}

	qs := fh.ScriptQueries()
	if len(qs) == 0 || !slices.ContainsFunc(qs, func(q host.ScriptQuery) bool {
		return q.MAC == "52:54:00:12:34:56" && q.Platform == host.PlatformGRUB && q.Peer == "127.0.0.1"
	}) {
		t.Errorf("script queries %+v: want pc-01's with platform %q from 127.0.0.1", qs, host.PlatformGRUB)
	}
	if ev := fh.WaitEvent(t, host.EventScriptServed, 2*time.Second); ev.Client != "pc-01" || ev.MAC != "52:54:00:12:34:56" {
		t.Errorf("script_served %+v, want pc-01's", ev)
	}
	loaders := map[string]string{}
	deadline := time.Now().Add(3 * time.Second)
	for len(loaders) < 2 && time.Now().Before(deadline) {
		for _, e := range fh.Events() {
			if e.Type == host.EventFileServed && e.Attrs[host.AttrLoader] != "" {
				loaders[e.Attrs[host.AttrFile]] = e.Attrs[host.AttrLoader]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if loaders["shimx64.efi"] != "shim" || loaders["grubx64.efi"] != "grub" || len(loaders) != 2 {
		t.Errorf("file_served loaders %v, want shimx64.efi shim, grubx64.efi grub, nothing else", loaders)
	}

	// A site's own build under root wins over the configured path.
	s.write(t, "shimx64.efi", []byte("the site's own shim"))
	mustFetch(t, s.addr, "shimx64.efi", []byte("the site's own shim"), fetchOpts{})
}

// TestGRUBFailureReport: GRUB's request for grub/failed/<token> is a
// boot_failed event with the token and stage grub, from the requester,
// answered not found; a name that is no token is just not found.
func TestGRUBFailureReport(t *testing.T) {
	fh := plugintest.NewFakeHost()
	s := startTFTP(t, map[string]any{}, plugintest.WithHost(fh))
	const token = "q5G0x-Vb_3nP8sYkRw2LmT4aZc7eJdHf1uQiKoXyN6A"
	for _, name := range []string{"/grub/failed/" + token, "/grub/failed/short", "/grub/failed/not a token at all, no"} {
		res, err := fetch(t, s.addr, name, fetchOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if res.errCode != 1 {
			t.Errorf("%s: error code %d %q, want 1 (not found)", name, res.errCode, res.errMsg)
		}
	}
	ev := fh.WaitEvent(t, host.EventBootFailed, 2*time.Second)
	if ev.Attrs[host.AttrToken] != token || ev.Attrs[host.AttrStage] != "grub" || ev.Address != "127.0.0.1" || ev.Attrs[host.AttrFile] != "" {
		t.Errorf("boot_failed %+v, want the token, stage grub, from 127.0.0.1, no file name", ev)
	}
	time.Sleep(200 * time.Millisecond) // a second event would have come by now
	n := 0
	for _, e := range fh.Events() {
		if e.Type == host.EventBootFailed {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d boot_failed events, want 1 (the names that are no token report nothing)", n)
	}
}

// TestSignedChainOff: with the paths and grub_config set to "", none of
// the chain's names is served.
func TestSignedChainOff(t *testing.T) {
	s := startTFTP(t, map[string]any{"shim": "", "grub": "", "mok_manager": "", "grub_config": ""})
	for _, name := range []string{"shimx64.efi", "grubx64.efi", "mmx64.efi", "grub/grub.cfg", "grub/mac/52:54:00:12:34:56.cfg", "files/x"} {
		res, err := fetch(t, s.addr, name, fetchOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if res.errCode != 1 {
			t.Errorf("%s: error code %d %q, want 1 (not found)", name, res.errCode, res.errMsg)
		}
	}
}

func TestSignedConfigErrors(t *testing.T) {
	c := DefaultConfig()
	c.Shim, c.GRUBConfig = "shimx64.efi.signed", "../grub"
	_, err := c.check()
	if err == nil {
		t.Fatal("a relative shim path and a grub_config leaving root were accepted")
	}
	var es config.Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T %v, want config.Errors", err, err)
	}
	var paths []string
	for _, e := range es {
		paths = append(paths, e.Path)
	}
	for _, want := range []string{"shim", "grub_config"} {
		if !slices.Contains(paths, want) {
			t.Errorf("errors at %v (%v), want one at %s", paths, err, want)
		}
	}
}
