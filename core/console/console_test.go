package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	return w
}

// TestPageAndModules: / is the page with a strict CSP, each module it
// loads is served as JavaScript.
func TestPageAndModules(t *testing.T) {
	w := get(t, "/")
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	page := w.Body.String()
	for _, want := range []string{`name="username"`, `name="password"`, `type="module" src="/ui/app.js"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	js, err := fs.Glob(files, "ui/*.js")
	if err != nil || len(js) < 5 {
		t.Fatalf("modules %v, %v", js, err)
	}
	for _, f := range js {
		// Preloaded, so the browser fetches every module at once rather
		// than finding them import by import.
		if f != "ui/app.js" && !strings.Contains(page, `<link rel="modulepreload" href="/`+f+`">`) {
			t.Errorf("page does not preload %s", f)
		}
		w := get(t, "/"+f)
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") {
			t.Errorf("GET /%s: %d %s", f, w.Code, w.Header().Get("Content-Type"))
		}
	}
	if w := get(t, "/ui/style.css"); !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %s", w.Header().Get("Content-Type"))
	}
}

// TestRevalidation: a file asked for again with the tag it was served
// with costs a 304 and no body; a changed tag gets the file.
func TestRevalidation(t *testing.T) {
	for _, path := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		first := get(t, path)
		tag := first.Header().Get("ETag")
		if first.Code != http.StatusOK || tag == "" {
			t.Fatalf("GET %s: %d, ETag %q", path, first.Code, tag)
		}
		for _, tc := range []struct {
			tag  string
			want int
		}{{tag, http.StatusNotModified}, {`"other"`, http.StatusOK}} {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("If-None-Match", tc.tag)
			w := httptest.NewRecorder()
			Handler().ServeHTTP(w, req)
			if w.Code != tc.want || (tc.want == http.StatusNotModified) != (w.Body.Len() == 0) {
				t.Errorf("GET %s If-None-Match %s: %d with %d bytes, want %d", path, tc.tag, w.Code, w.Body.Len(), tc.want)
			}
		}
	}
	if a, b := get(t, "/ui/app.js").Header().Get("ETag"), get(t, "/ui/api.js").Header().Get("ETag"); a == b {
		t.Errorf("two files share the tag %s", a)
	}
}

// TestNothingFromOutside: no file of the page names another origin (the
// page must work on a host with no Internet, and leak nothing).
func TestNothingFromOutside(t *testing.T) {
	outside := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(files, "ui", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		if m := outside.FindString(string(b)); m != "" {
			t.Errorf("%s names another origin: %s", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnknownFile(t *testing.T) {
	if w := get(t, "/ui/nope.js"); w.Code != http.StatusNotFound {
		t.Errorf("GET /ui/nope.js: %d", w.Code)
	}
}
