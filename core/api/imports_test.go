package api

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nothingCreated checks that a refused import left no image row, made no
// storage call and left no file in the upload folder.
func (e *env) nothingCreated(image string) {
	e.t.Helper()
	if _, err := e.st.GetImage(e.t.Context(), image); err == nil {
		e.t.Errorf("image %s was created", image)
	}
	e.stor.mu.Lock()
	calls := slices.Clone(e.stor.calls)
	e.stor.mu.Unlock()
	if len(calls) != 0 {
		e.t.Errorf("storage calls %q, want none", calls)
	}
	if left, _ := os.ReadDir(e.uploads); len(left) != 0 {
		e.t.Errorf("upload folder holds %d files", len(left))
	}
}

// TestImportRefusedWithoutImportDirs: by default the API refuses every
// server-side path, such as the host's own database.
func TestImportRefusedWithoutImportDirs(t *testing.T) {
	e := newEnv(t, func(_ *Deps, o *Options) { o.ImportDirs = nil })
	tok := e.login("alice").AccessToken
	e.wantError(e.do("POST", "/images", tok, map[string]any{"name": "steal", "storage": "tank", "source": "/var/lib/dls/dls.db"}),
		http.StatusForbidden, "source /var/lib/dls/dls.db: this host imports no path on its own disk (images.import_dirs is empty in its config); upload the file instead (dls image import NAME --source FILE streams it from your machine), or list the file's folder in images { import_dirs = [...] } on the host", "source")
	e.nothingCreated("steal")
	e.wantError(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "import", "source": e.src("b.raw")}),
		http.StatusForbidden, "images.import_dirs is empty", "source")
	e.nothingCreated("steal")
	last := e.st.audit[len(e.st.audit)-1]
	if last.Action != "image.import_refused" || last.Object != "image/win11" || last.Actor != "alice" || !strings.Contains(last.Detail, e.src("b.raw")) {
		t.Errorf("audit %+v", last)
	}
	// A reload that lists the folder lets the same request through.
	e.api.SetImportDirs([]string{e.imports})
	e.want(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "import", "source": e.src("b.raw")}), http.StatusCreated, nil)
}

// TestImportOutsideImportDirs: paths outside, with "..", relative, or
// through a symlink leading out are refused (403) before anything is made.
func TestImportOutsideImportDirs(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice").AccessToken
	outside := filepath.Join(t.TempDir(), "secret.raw")
	if err := os.WriteFile(outside, make([]byte, 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, e.src("link.raw")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), e.src("linkdir")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ source, msg string }{
		{outside, "source " + outside + " is not under images.import_dirs (" + e.imports + "); upload the file instead"},
		{e.imports + "/../" + filepath.Base(e.imports) + "/b.raw", `".." is not allowed in a source path`},
		{e.imports + "/../../etc/passwd", `".." is not allowed in a source path`},
		{"b.raw", `source "b.raw" is not an absolute path`},
		{e.imports, "is not under images.import_dirs"},
		{e.src("link.raw"), "source " + e.src("link.raw") + " leads out of " + e.imports + " through a symbolic link"},
		{e.src("linkdir/secret.raw"), "through a symbolic link"},
	} {
		e.wantError(e.do("POST", "/images", tok, map[string]any{"name": "x", "storage": "tank", "source": tc.source}), http.StatusForbidden, tc.msg, "source")
		e.nothingCreated("x")
		e.wantError(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "import", "source": tc.source}), http.StatusForbidden, tc.msg, "source")
		e.nothingCreated("x")
		if last := e.st.audit[len(e.st.audit)-1]; last.Action != "image.import_refused" {
			t.Errorf("%s: last audit %+v", tc.source, last)
		}
	}
}

// TestImportInsideImportDirs: a file under an import dir (also through a
// symlink that stays inside) is copied to a 0600 file the plugin imports,
// which is gone afterwards; bad files are 400 before anything is created.
func TestImportInsideImportDirs(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice").AccessToken
	if err := os.Mkdir(e.src("sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../deb12.raw", e.src("sub/current.raw")); err != nil {
		t.Fatal(err)
	}
	var im imageJSON
	e.want(e.do("POST", "/images", tok, map[string]any{"name": "deb12", "storage": "tank", "source": e.src("sub/current.raw")}), http.StatusCreated, &im)
	want, _ := os.ReadFile(e.src("deb12.raw"))
	if im.Version == nil || im.Version.Number != 1 || im.Source != e.src("sub/current.raw") || !bytes.Equal(e.stor.imported["deb12"], want) {
		t.Errorf("created %+v; plugin read %d bytes", im, len(e.stor.imported["deb12"]))
	}
	if m := e.stor.importedMode["deb12"].Perm(); m != 0o600 {
		t.Errorf("the plugin's file had mode %v, want 0600", m)
	}
	if fi, err := os.Stat(e.uploads); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("upload folder: %v %v, want mode 0700", fi.Mode(), err)
	}
	if left, _ := os.ReadDir(e.uploads); len(left) != 0 {
		t.Errorf("upload folder keeps %d files", len(left))
	}

	if err := os.WriteFile(e.src("odd.raw"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.src("empty.raw"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.stor.calls = nil
	for source, msg := range map[string]string{
		e.src("missing.raw"): "source " + e.src("missing.raw") + " does not exist on the host",
		e.src("sub"):         "source " + e.src("sub") + ": not a regular file",
		e.src("odd.raw"):     "source " + e.src("odd.raw") + ": 1000 bytes: a raw disk image is a non-zero multiple of 512 bytes",
		e.src("empty.raw"):   "0 bytes: a raw disk image",
	} {
		e.wantError(e.do("POST", "/images", tok, map[string]any{"name": "bad", "storage": "tank", "source": source}), http.StatusBadRequest, msg, "source")
		e.nothingCreated("bad")
	}
}

// TestUpload: the body of POST images/{name}/versions, sent as
// application/octet-stream, becomes the next version.
func TestUpload(t *testing.T) {
	e := newEnv(t, func(_ *Deps, o *Options) { o.ImportDirs = nil })
	tok := e.login("alice").AccessToken
	disk := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	var v versionJSON
	e.want(e.do("POST", "/images/win11/versions", tok, disk, "Content-Type", "application/octet-stream"), http.StatusCreated, &v)
	if v.Number != 2 || !v.Current || !bytes.Equal(e.stor.imported["win11"], disk) {
		t.Errorf("version %+v; plugin read %d bytes", v, len(e.stor.imported["win11"]))
	}
	last := e.st.audit[len(e.st.audit)-1]
	if last.Action != "image.import" || last.Object != "image/win11" || last.Detail != `{"bytes":3145728,"source":"upload","version":2}` {
		t.Errorf("audit %+v", last)
	}
	if left, _ := os.ReadDir(e.uploads); len(left) != 0 {
		t.Errorf("upload folder keeps %d files", len(left))
	}
	e.stor.calls = nil
	e.wantError(e.do("POST", "/images/win11/versions", tok, make([]byte, 700), "Content-Type", "application/octet-stream"),
		http.StatusBadRequest, "import upload into image win11: 700 bytes: a raw disk image is a non-zero multiple of 512 bytes", "source")
	e.wantError(e.do("POST", "/images/nope/versions", tok, disk, "Content-Type", "application/octet-stream"), http.StatusNotFound, "no image", "")
	e.wantError(e.do("POST", "/images/win11/versions", e.login("oscar").AccessToken, disk, "Content-Type", "application/octet-stream"), http.StatusForbidden, "", "")
	e.nothingCreated("nope")
}

// TestUploadOwnedByPluginUser: with plugins under another user, the
// upload file the storage plugin opens is that user's, still 0600, in a
// folder others may pass but not list. Root only (it chowns).
func TestUploadOwnedByPluginUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	const nobody = 65534
	e := newEnv(t, func(_ *Deps, o *Options) { o.UploadOwner = &FileOwner{UID: nobody, GID: nobody} })
	tok := e.login("alice").AccessToken
	disk := bytes.Repeat([]byte{7}, 4096)
	e.want(e.do("POST", "/images/win11/versions", tok, disk, "Content-Type", "application/octet-stream"), http.StatusCreated, nil)
	if uid := e.stor.importedUID["win11"]; uid != nobody || e.stor.importedMode["win11"].Perm() != 0o600 {
		t.Errorf("plugin opened a file of uid %d, mode %v; want %d, 0600", uid, e.stor.importedMode["win11"], nobody)
	}
	if fi, err := os.Stat(e.uploads); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("upload folder %v, %v; want 0711", fi.Mode(), err)
	}
}

// TestUploadImportErrorSaysItOnce: a storage that fails an upload's
// import: 502, "import image NAME from upload: why", the operation said
// once and not with the host's temporary file.
func TestUploadImportErrorSaysItOnce(t *testing.T) {
	e := newEnv(t, func(_ *Deps, o *Options) { o.ImportDirs = nil })
	tok := e.login("alice").AccessToken
	e.stor.importErr = errors.New("pool tank is read-only")
	w := e.do("POST", "/images/win11/versions", tok, make([]byte, 4096), "Content-Type", "application/octet-stream")
	var b errorBody
	e.want(w, http.StatusBadGateway, &b)
	if b.Error != "import image win11 from upload: pool tank is read-only" {
		t.Errorf("error %q", b.Error)
	}
}
