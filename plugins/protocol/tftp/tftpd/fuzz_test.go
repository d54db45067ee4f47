package tftpd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzRoot is a root with symlinks that point inside and outside it.
func fuzzRoot(f *testing.F) (root string, outside string) {
	base := f.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "dir/sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	for _, p := range []string{filepath.Join(outside, "secret"), filepath.Join(root, "file"), filepath.Join(root, "dir/sub/f")} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"out":        outside,
		"out-file":   filepath.Join(outside, "secret"),
		"dir/up":     "../..",
		"dir/sub/up": "../../../outside",
		"in":         "dir/sub",
		"loop":       "loop",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			f.Fatal(err)
		}
	}
	return root, outside
}

// checkResolve opens name the way the server does and fails if anything
// opened lies outside root.
func checkResolve(t *testing.T, root, realRoot, name string) {
	rel, rerr := localName(name)
	if rerr != nil {
		if rerr.code == 0 || rerr.reason == "" {
			t.Fatalf("localName(%q): refusal without code or reason: %+v", name, rerr)
		}
		return
	}
	if !filepath.IsLocal(rel) {
		t.Fatalf("localName(%q) = %q: not a local path", name, rel)
	}
	if strings.Contains(rel, "..") && strings.Contains("/"+rel+"/", "/../") {
		t.Fatalf("localName(%q) = %q has a .. element", name, rel)
	}
	f, _, rerr := openFile(root, rel)
	if rerr != nil {
		if rerr.code == 0 && rerr.reason != reasonInternal {
			t.Fatalf("openFile(%q): %+v", rel, rerr)
		}
		return
	}
	defer f.Close()
	// Where the descriptor really points.
	got, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if got != realRoot && !strings.HasPrefix(got, realRoot+"/") {
		t.Fatalf("name %q opened %s, outside root %s", name, got, realRoot)
	}
}

// FuzzParseRequest: no packet makes parsing panic; what parses has a
// bounded name without NUL and a known mode; resolving its name never
// opens anything outside root.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range [][]byte{
		rrq("undionly.kpxe", "octet", "blksize", "1468", "tsize", "0"),
		rrq("/mac/52-54-00-12-34-56.ipxe", "octet"),
		rrq("../../etc/passwd", "netascii"),
		rrq("out/secret", "octet"),
		rrq("dir/up/outside/secret", "octet"),
		rrq("in/up/outside/secret", "octet"),
		rrq("dir/sub/up/secret", "octet"),
		rrq("a", "b", "octet"),
		append([]byte{0, 2}, rrq("x", "octet")[2:]...),
		{0, 1, 0, 0},
		{0, 1},
	} {
		f.Add(seed)
	}
	root, _ := fuzzRoot(f)
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	set := testSettings()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		req, err := ParseRequest(pkt)
		if err != nil {
			if _, ok := err.(*requestError); !ok {
				t.Fatalf("error %T %v, want *requestError", err, err)
			}
			return
		}
		if req.Name == "" || len(req.Name) > MaxNameLen || strings.IndexByte(req.Name, 0) >= 0 {
			t.Fatalf("parsed name %q", req.Name)
		}
		if req.Mode != modeOctet && req.Mode != modeNetascii {
			t.Fatalf("parsed mode %q", req.Mode)
		}
		p := negotiate(&req, &set, 12345)
		if p.blksize < MinBlksize || p.blksize > MaxBlksize || p.window < 1 || p.window > set.MaxWindowsize || p.timeout <= 0 {
			t.Fatalf("negotiated %+v from %+v", p, req.Options)
		}
		checkResolve(t, root, realRoot, req.Name)
	})
}

// FuzzResolve: no name resolves outside root, through "..", absolute
// paths or symlinks.
func FuzzResolve(f *testing.F) {
	for _, seed := range []string{
		"file", "/file", "//file", "../file", "dir/../file", "out/secret", "out-file", "dir/up/outside/secret",
		"in/up/outside/secret", "dir/sub/up/secret", "in/../../outside/secret", "loop", "./dir/./sub/f", "dir/sub/../../out",
	} {
		f.Add(seed)
	}
	root, _ := fuzzRoot(f)
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		checkResolve(t, root, realRoot, name)
		if mac, ok := scriptMAC(name, "mac"); ok && len(mac) != 17 {
			t.Fatalf("scriptMAC(%q) = %q", name, mac)
		}
	})
}
