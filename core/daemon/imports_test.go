package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageUploadThroughRealStoragePlugin: an upload and an import from
// images.import_dirs reach the file storage plugin (a subprocess) as whole
// disks; a path outside import_dirs is refused with nothing created.
func TestImageUploadThroughRealStoragePlugin(t *testing.T) {
	imports := t.TempDir()
	inside := filepath.Join(imports, "lab-v2.raw")
	v2 := bytes.Repeat([]byte("version two!"), 1<<16) // 768 KiB
	if err := os.WriteFile(inside, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, fmt.Sprintf(`
images {
  import_dirs = [%q]
}
auth "local" "admins" {
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
storage "file" "files" {}
`, imports))
	h.waitFor(10*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	h.d.mu.Lock()
	p := h.d.instances["admins"].sup.Process()
	h.d.mu.Unlock()
	if err := createUser(p, "alice", "correct horse battery", "admin"); err != nil {
		t.Fatal(err)
	}
	code, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"alice","password":"correct horse battery"}`)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); code != 200 || err != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	if code, body := h.do("POST", "/api/v1/images", tok.AccessToken, `{"name":"lab","storage":"files"}`); code != 201 {
		t.Fatalf("create image: %d %s", code, body)
	}

	v1 := bytes.Repeat([]byte("version one!"), 1<<17) // 1.5 MiB
	req, _ := http.NewRequest("POST", h.url+"/api/v1/images/lab/versions", bytes.NewReader(v1))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	if code, body := h.do("POST", "/api/v1/images/lab/versions", tok.AccessToken, fmt.Sprintf(`{"action":"import","source":%q}`, inside)); code != 201 {
		t.Fatalf("import from import_dirs: %d %s", code, body)
	}
	code, body = h.do("POST", "/api/v1/images", tok.AccessToken, fmt.Sprintf(`{"name":"steal","storage":"files","source":%q}`, h.d.cfg.Database.Path))
	if code != 403 || !strings.Contains(body, "is not under images.import_dirs") {
		t.Errorf("import of the database: %d %s", code, body)
	}
	if code, _ := h.do("GET", "/api/v1/images/steal", tok.AccessToken, ""); code != 404 {
		t.Errorf("refused image: GET %d, want 404", code)
	}

	code, body = h.do("GET", "/api/v1/images/lab/versions", tok.AccessToken, "")
	var vs []struct {
		Number  uint64 `json:"number"`
		Size    int64  `json:"size"`
		Current bool   `json:"current"`
	}
	if err := json.Unmarshal([]byte(body), &vs); code != 200 || err != nil || len(vs) != 2 || vs[0].Size != int64(len(v1)) || vs[1].Size != int64(len(v2)) || !vs[1].Current {
		t.Fatalf("versions: %d %s", code, body)
	}
	// The plugin holds both disks byte for byte; the host's copies are gone.
	found := map[string]bool{}
	_ = filepath.WalkDir(filepath.Join(h.d.cfg.DataDir, "plugins", "files"), func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Equal(b, v1) {
				found["v1"] = true
			} else if bytes.Equal(b, v2) {
				found["v2"] = true
			}
		}
		return nil
	})
	if !found["v1"] || !found["v2"] {
		t.Errorf("the storage plugin holds %v, want v1 and v2", found)
	}
	if left, _ := os.ReadDir(filepath.Join(h.d.cfg.DataDir, "uploads")); len(left) != 0 {
		t.Errorf("uploads folder keeps %d files", len(left))
	}
}
