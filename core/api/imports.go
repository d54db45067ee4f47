package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// This file decides what an image import reads. A source path sent in a
// request names a file on the host: it must lie under Options.ImportDirs
// (images { import_dirs }, none by default) and is opened through os.Root,
// so neither ".." nor a symlink leads out of those folders; anything else
// is refused (403, audited as image.import_refused) before anything is
// created. An upload (the body of POST images/{name}/versions sent as
// application/octet-stream) is any file the caller has.
//
// Either way the host copies the bytes, streamed, into a temporary file
// under Options.UploadDir (mode 0600 in a 0700 folder, removed after the
// import), and the storage plugin imports that file: a plugin never opens
// a path a request named, so a symlink swapped after the check cannot
// redirect it.

// sectorSize: a raw disk image is a whole number of 512-byte sectors.
const sectorSize = 512

// uploadType is the Content-Type of an upload.
const uploadType = "application/octet-stream"

// SetImportDirs replaces the folders source paths in requests may lie
// under (images.import_dirs, at a reload). Nil refuses every path.
func (a *API) SetImportDirs(dirs []string) {
	clean := make([]string, len(dirs))
	for i, d := range dirs {
		clean[i] = filepath.Clean(d)
	}
	a.importMu.Lock()
	defer a.importMu.Unlock()
	a.importDirs = clean
}

func (a *API) importDirList() []string {
	a.importMu.RLock()
	defer a.importMu.RUnlock()
	return a.importDirs
}

// isUpload reports whether r's body is an image file rather than JSON.
func isUpload(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == uploadType
}

// openSource opens source, a path sent in a request for object, through
// the os.Root of the import dir holding it. Refusals are 403 and audited;
// a source that does not exist, cannot be read or is not a raw disk image
// is 400.
func (a *API) openSource(r *http.Request, object, source string) (*os.File, error) {
	dirs := a.importDirList()
	refuse := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		a.auditReq(r, "image.import_refused", object, map[string]string{"source": source, "reason": msg})
		return &apiError{status: http.StatusForbidden, msg: msg, field: "source"}
	}
	const upload = "upload the file instead (dls image import NAME --source FILE streams it from your machine)"
	if len(dirs) == 0 {
		return nil, refuse("source %s: this host imports no path on its own disk (images.import_dirs is empty in its config); %s, or list the file's folder in images { import_dirs = [...] } on the host", source, upload)
	}
	if !filepath.IsAbs(source) {
		return nil, refuse("source %q is not an absolute path; a source path must lie under images.import_dirs (%s)", source, strings.Join(dirs, ", "))
	}
	if slices.Contains(strings.Split(source, "/"), "..") {
		return nil, refuse("source %s: \"..\" is not allowed in a source path; it must lie under images.import_dirs (%s)", source, strings.Join(dirs, ", "))
	}
	clean := filepath.Clean(source)
	var dir, rel string
	for _, d := range dirs {
		if r, err := filepath.Rel(d, clean); err == nil && r != "." && r != ".." && !strings.HasPrefix(r, "../") {
			dir, rel = d, r
			break
		}
	}
	if dir == "" {
		return nil, refuse("source %s is not under images.import_dirs (%s); %s", source, strings.Join(dirs, ", "), upload)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, errorf(http.StatusServiceUnavailable, "import dir %s: %v", dir, err)
	}
	defer root.Close()
	f, err := root.Open(rel)
	switch {
	case err == nil:
	case isEscape(err):
		return nil, refuse("source %s leads out of %s through a symbolic link; a source must stay under images.import_dirs", source, dir)
	case errors.Is(err, fs.ErrNotExist):
		return nil, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("source %s does not exist on the host", source), field: "source"}
	case errors.Is(err, fs.ErrPermission):
		return nil, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("source %s: the host may not read it (permission denied); %s", source, upload), field: "source"}
	default:
		return nil, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("source %s: %v", source, err), field: "source"}
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file")
	} else if err == nil {
		err = checkRawSize(fi.Size())
	}
	if err != nil {
		f.Close()
		return nil, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("source %s: %v", source, err), field: "source"}
	}
	return f, nil
}

// isEscape reports os.Root's refusal of a path that leaves the root. The
// error is not exported; its text is stable and a test holds it.
func isEscape(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == "path escapes from parent"
}

// checkRawSize refuses what cannot be a raw disk image.
func checkRawSize(n int64) error {
	if n <= 0 || n%sectorSize != 0 {
		return fmt.Errorf("%d bytes: a raw disk image is a non-zero multiple of %d bytes", n, sectorSize)
	}
	return nil
}

// uploadFile creates a temporary file (0600) for an import into image,
// owned by UploadOwner when plugins run as another user.
func (a *API) uploadFile(image string) (*os.File, error) {
	mode := os.FileMode(0o700)
	if a.opts.UploadOwner != nil {
		mode = 0o711 // the plugin opens its file by name, lists nothing
	}
	if err := os.MkdirAll(a.opts.UploadDir, mode); err != nil {
		return nil, fmt.Errorf("create upload folder: %w", err)
	}
	if err := os.Chmod(a.opts.UploadDir, mode); err != nil {
		return nil, fmt.Errorf("upload folder: %w", err)
	}
	f, err := os.CreateTemp(a.opts.UploadDir, image+"-*.raw") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("create upload file: %w", err)
	}
	if o := a.opts.UploadOwner; o != nil {
		if err := f.Chown(int(o.UID), int(o.GID)); err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return nil, fmt.Errorf("give upload file %s to uid %d: %w", f.Name(), o.UID, err)
		}
	}
	return f, nil
}

// importFrom copies src (what describes it in messages: a path or
// "upload") into a temporary file under UploadDir and imports that as the
// image's next version; the file is removed after.
func (a *API) importFrom(ctx context.Context, image string, src io.Reader, what string) (versionJSON, int64, error) {
	if a.opts.UploadDir == "" {
		return versionJSON{}, 0, errorf(http.StatusServiceUnavailable, "this host has no upload folder (api.Options.UploadDir); it cannot import %s", what)
	}
	f, err := a.uploadFile(image)
	if err != nil {
		return versionJSON{}, 0, err
	}
	defer os.Remove(f.Name())
	n, err := io.Copy(f, src) // streamed: 32 KiB at a time, or copy_file_range
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var pe *fs.PathError
	switch {
	case err == nil:
	case errors.Is(err, syscall.ENOSPC):
		return versionJSON{}, n, errorf(http.StatusInsufficientStorage, "import %s into image %s: the host's upload folder %s is full after %d bytes: %v", what, image, a.opts.UploadDir, n, err)
	case errors.As(err, &pe) && pe.Path == f.Name():
		return versionJSON{}, n, fmt.Errorf("import %s into image %s: write %s: %w", what, image, f.Name(), err)
	default:
		return versionJSON{}, n, errorf(http.StatusBadRequest, "import %s into image %s: reading it stopped after %d bytes: %v", what, image, n, err)
	}
	if err := checkRawSize(n); err != nil {
		return versionJSON{}, n, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("import %s into image %s: %v", what, image, err), field: "source"}
	}
	v, err := a.importVersion(ctx, image, f.Name(), what)
	return v, n, err
}
