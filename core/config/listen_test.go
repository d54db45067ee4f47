package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootListen(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, "http {\n  listen = \"127.0.0.1:9180\"\n}\nboot {\n  listen = \"192.168.77.1:9184\"\n}\n"))
	if cfg.Boot.Listen != "192.168.77.1:9184" || cfg.Boot.URL != "http://192.168.77.1:9184" {
		t.Errorf("boot.listen %q, boot.url %q", cfg.Boot.Listen, cfg.Boot.URL)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
	// An IPv6 boot listener: the URL keeps the brackets.
	cfg = mustLoad(t, writeConfig(t, "http {\n  listen = \"[::1]:9180\"\n}\nboot {\n  listen = \"[fd00:77::1]:9184\"\n}\n"))
	if cfg.Boot.Listen != "[fd00:77::1]:9184" || cfg.Boot.URL != "http://[fd00:77::1]:9184" || len(cfg.Warnings) != 0 {
		t.Errorf("IPv6: boot.listen %q, boot.url %q, warnings %q", cfg.Boot.Listen, cfg.Boot.URL, cfg.Warnings)
	}
	// boot.url set explicitly wins over boot.listen.
	cfg = mustLoad(t, writeConfig(t, "boot {\n  listen = \"0.0.0.0:9184\"\n  url = \"http://10.0.0.1:9184/\"\n}\n"))
	if cfg.Boot.URL != "http://10.0.0.1:9184" {
		t.Errorf("boot.url %q", cfg.Boot.URL)
	}
	// The default http.listen is loopback: no warning without boot.listen.
	cfg = mustLoad(t, writeConfig(t, ""))
	if cfg.HTTP.Listen != "127.0.0.1:9180" || cfg.Boot.Listen != "" || len(cfg.Warnings) != 0 {
		t.Errorf("defaults: http.listen %q boot.listen %q warnings %q", cfg.HTTP.Listen, cfg.Boot.Listen, cfg.Warnings)
	}
}

func TestBootListenErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"not host:port", "boot {\n  listen = \"192.168.77.1\"\n}\n",
			`2:12: Invalid value for "listen"; "192.168.77.1" is not a host:port address such as "127.0.0.1:69".`},
		{"IPv6 without brackets", "boot {\n  listen = \"fd00:77::1:9184\"\n}\n",
			`2:12: Invalid value for "listen"; "fd00:77::1:9184" is not a host:port address: write an IPv6 address in brackets, as in "[fd00:77::1]:9184".`},
		{"same as http.listen", "http {\n  listen = \"192.168.77.1:9180\"\n}\nboot {\n  listen = \"192.168.77.1:9180\"\n}\n",
			`5:12: Invalid value for "listen"; boot.listen "192.168.77.1:9180" is also http.listen: give the boot listener the boot network's address and keep http.listen on loopback or a management address.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, err := load(path, noEnv)
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			if got := strings.TrimPrefix(err.Error(), path+":"); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestSharedListenerWarning: without boot.listen, an http.listen that is
// not loopback loads with a warning at the listen attribute.
func TestSharedListenerWarning(t *testing.T) {
	for listen, warn := range map[string]bool{
		"0.0.0.0:9180": true, ":9180": true, "192.168.77.1:9180": true, "dls.lan:9180": true, "[::]:9180": true,
		"127.0.0.1:9180": false, "127.0.0.2:9180": false, "[::1]:9180": false, "localhost:9180": false,
	} {
		path := writeConfig(t, "data_dir = \"var\"\nhttp {\n  listen = \""+listen+"\"\n}\n")
		cfg := mustLoad(t, path)
		if !warn {
			if len(cfg.Warnings) != 0 {
				t.Errorf("%s: warnings %q", listen, cfg.Warnings)
			}
			continue
		}
		want := path + `:3:12: warning: Admin API on the boot network; http.listen "` + listen + `" is not a loopback address and boot.listen is not set, so /api/v1 and /metrics are served wherever machines fetch /boot; set boot { listen = "<boot network address>:9184" } and keep http.listen on loopback or a management address.`
		if len(cfg.Warnings) != 1 || cfg.Warnings[0] != want {
			t.Errorf("%s: warnings %q\nwant %q", listen, cfg.Warnings, want)
		}
		// With boot.listen the admin listener may be anywhere.
		cfg = mustLoad(t, writeConfig(t, "http {\n  listen = \""+listen+"\"\n}\nboot {\n  listen = \"10.9.9.9:9184\"\n}\n"))
		if len(cfg.Warnings) != 0 {
			t.Errorf("%s with boot.listen: warnings %q", listen, cfg.Warnings)
		}
	}
}

func TestImportDirs(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "a", "..", "b")
	if err := os.MkdirAll(filepath.Join(dir, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, writeConfig(t, "images {\n  import_dirs = [\""+dir+"\", \""+other+"\"]\n}\n"))
	if len(cfg.ImportDirs) != 2 || cfg.ImportDirs[0] != dir || cfg.ImportDirs[1] != filepath.Join(dir, "b") {
		t.Errorf("import_dirs = %q", cfg.ImportDirs)
	}
	if cfg = mustLoad(t, writeConfig(t, "")); cfg.ImportDirs != nil {
		t.Errorf("default import_dirs = %q, want none", cfg.ImportDirs)
	}

	file := filepath.Join(dir, "f.raw")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	text := "images {\n  import_dirs = [\n    \"" + dir + "\",\n    \"srv/images\",\n    \"" + missing + "\",\n    \"" + file + "\",\n  ]\n}\nimages {}\n"
	path := writeConfig(t, text)
	_, err := load(path, noEnv)
	if err == nil {
		t.Fatal("loaded, want errors")
	}
	want := strings.Join([]string{
		path + `:4:5: Invalid value for "import_dirs"; Element 1: "srv/images" is not an absolute path; import_dirs are folders on the host such as "/srv/images".`,
		path + `:5:5: Invalid value for "import_dirs"; Element 2: stat ` + missing + `: no such file or directory.`,
		path + `:6:5: Invalid value for "import_dirs"; Element 3: "` + file + `" is not a folder.`,
		path + `:9:1: Duplicate images block; Only one images block is allowed; the first is at ` + path + `:1:1.`,
	}, "\n")
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
}
