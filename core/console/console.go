// Package console serves the floor console: a web page on the admin
// listener where an operator watches every machine boot and acts on it.
// It is plain HTML, CSS and JavaScript modules embedded in the binary (no
// build step, nothing loaded from outside the host); everything it shows
// and does is a call to the admin API (/api/v1), signed in with the API's
// browser session (POST /api/v1/auth/session: a cookie, and a CSRF token
// on every write).
//
// Routes: GET / is the page; GET /ui/... its modules and style sheet. The
// page's own routes are fragments (#/floor, #/client/NAME, #/images,
// #/plugins, #/audit), so a reload lands where it was.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed ui
var files embed.FS

// contentSecurityPolicy allows the page nothing but its own host: no
// inline script, no other origin, no framing (clickjacking).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the page at GET / and its files under GET /ui/; mount it
// at both on the admin listener's mux.
func Handler() http.Handler {
	// Request paths /ui/x are the embedded files ui/x as they are.
	assets := http.FileServerFS(files)
	tags := etags()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		headers(w.Header(), tags["ui/index.html"])
		http.ServeFileFS(w, r, files, "ui/index.html")
	})
	mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		headers(w.Header(), tags[strings.TrimPrefix(r.URL.Path, "/")])
		assets.ServeHTTP(w, r)
	})
	return mux
}

// etags names each embedded file by its content. Embedded files have no
// modification time, so without a tag every load would fetch every file
// again; with it a reload costs a 304 per file (no-cache still makes the
// browser ask, so a new binary's files are never stale).
func etags() map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(files, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags[path] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return tags
}

func headers(h http.Header, etag string) {
	secure(h)
	h.Set("Cache-Control", "no-cache")
	if etag != "" {
		h.Set("ETag", etag)
	}
}

func secure(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}
