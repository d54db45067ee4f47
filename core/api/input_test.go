package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestBadInputChangesNothing: every malformed write answers 4xx with a
// message (and the field at fault), and leaves the store and the audit log
// as they were.
func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice").AccessToken
	e.mustCreateClient(tok, "pc1", "52:54:00:00:00:01")
	e.want(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11", "address": "10.0.0.21"}), http.StatusOK, nil)

	big := `{"name":"pc9","mac":"52:54:00:00:00:09","image":"win11","labels":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`
	cases := []struct {
		name         string
		method, path string
		body         any
		hdr          []string
		status       int
		msg, field   string
	}{
		{"malformed JSON", "POST", "/clients", `{"name": "pc2", "mac": `, nil, 400, "malformed JSON", ""},
		{"not JSON at all", "POST", "/clients", `name=pc2`, nil, 400, "malformed JSON", ""},
		{"trailing data", "POST", "/clients", `{"name":"pc2","mac":"52:54:00:00:00:02","image":"win11"} {}`, nil, 400, "after the object", ""},
		{"array body", "POST", "/clients", `[1]`, nil, 400, "want a JSON object", ""},
		{"unknown field", "POST", "/clients", `{"name":"pc2","mac":"52:54:00:00:00:02","image":"win11","colour":"red"}`, nil, 400, `unknown field "colour"`, "colour"},
		{"wrong type", "POST", "/clients", `{"name":"pc2","mac":"52:54:00:00:00:02","image":"win11","persistent":"yes"}`, nil, 400, "want a boolean, not string", "persistent"},
		{"2 MiB body", "POST", "/clients", big, nil, 413, "larger than 1048576 bytes", ""},
		{"empty body", "POST", "/clients", "", nil, 400, "empty", ""},
		{"text/plain", "POST", "/clients", `{"name":"pc2","mac":"52:54:00:00:00:02","image":"win11"}`, []string{"Content-Type", "text/plain"}, 415, "want application/json", ""},
		{"no content type", "POST", "/clients", `{"name":"pc2","mac":"52:54:00:00:00:02","image":"win11"}`, []string{"Content-Type", ""}, 415, "missing", ""},
		{"invalid MAC", "POST", "/clients", map[string]any{"name": "pc2", "mac": "52:54:00:00:00:zz", "image": "win11"}, nil, 400, "not a MAC address", "mac"},
		{"missing MAC", "POST", "/clients", map[string]any{"name": "pc2", "image": "win11"}, nil, 400, "not a MAC address", "mac"},
		{"bad name", "POST", "/clients", map[string]any{"name": "PC_2", "mac": "52:54:00:00:00:02", "image": "win11"}, nil, 400, "want 1-64", "name"},
		{"name too long", "POST", "/clients", map[string]any{"name": strings.Repeat("a", 65), "mac": "52:54:00:00:00:02", "image": "win11"}, nil, 400, "want 1-64", "name"},
		{"IPv6 address", "POST", "/clients", map[string]any{"name": "pc2", "mac": "52:54:00:00:00:02", "image": "win11", "address": "fe80::1"}, nil, 400, "not an IPv4", "address"},
		{"unknown image", "POST", "/clients", map[string]any{"name": "pc2", "mac": "52:54:00:00:00:02", "image": "nope"}, nil, 400, `no image "nope"`, "image"},
		{"duplicate name", "POST", "/clients", map[string]any{"name": "pc1", "mac": "52:54:00:00:00:02", "image": "win11"}, nil, 409, "client pc1 exists", "name"},
		{"duplicate MAC", "POST", "/clients", map[string]any{"name": "pc2", "mac": "52-54-00-00-00-01", "image": "win11"}, nil, 409, "belongs to client pc1", ""},
		{"duplicate address", "POST", "/clients", map[string]any{"name": "pc2", "mac": "52:54:00:00:00:02", "image": "win11", "address": "10.0.0.21"}, nil, 409, "belongs to client pc1", ""},
		{"rename by PUT", "PUT", "/clients/pc1", map[string]any{"name": "pc7", "mac": "52:54:00:00:00:01", "image": "win11"}, nil, 400, "cannot be renamed", "name"},
		{"PUT unknown client", "PUT", "/clients/pc7", map[string]any{"mac": "52:54:00:00:00:07", "image": "win11"}, nil, 404, `no client "pc7"`, ""},
		{"volume bad action", "POST", "/clients/pc1/volume", map[string]any{"action": "wipe"}, nil, 400, `want "reset"`, "action"},
		{"volume negative version", "POST", "/clients/pc1/volume", `{"action":"reset","version":-1}`, nil, 400, "want a non-negative integer", "version"},
		{"wake with unknown field", "POST", "/clients/pc1/wake", `{"now":true}`, nil, 400, "unknown field", "now"},
		{"duplicate image", "POST", "/images", map[string]any{"name": "win11", "storage": "tank"}, nil, 409, "image win11 exists", "name"},
		{"image bad name", "POST", "/images", map[string]any{"name": "../etc", "storage": "tank"}, nil, 400, "want 1-64", "name"},
		{"image unknown storage", "POST", "/images", map[string]any{"name": "deb", "storage": "local"}, nil, 400, `no storage plugin "local"`, "storage"},
		{"image boot without kernel", "POST", "/images", map[string]any{"name": "deb", "storage": "tank", "boot": map[string]any{"cmdline": "quiet"}}, nil, 400, "kernel is required", "boot"},
		{"image boot unknown field", "POST", "/images", `{"name":"deb","storage":"tank","boot":{"kernel":"k","root":"x"}}`, nil, 400, `unknown field "root"`, "root"},
		{"config image PUT", "PUT", "/images/win11", map[string]any{"storage": "tank"}, nil, 409, "declared in the config", ""},
		{"version bad action", "POST", "/images/win11/versions", map[string]any{"action": "clone"}, nil, 400, "want snapshot, promote or import", "action"},
		{"promote without client", "POST", "/images/win11/versions", map[string]any{"action": "promote"}, nil, 400, "client is required", "client"},
		{"promote unknown client", "POST", "/images/win11/versions", map[string]any{"action": "promote", "client": "pc7"}, nil, 400, `no client "pc7"`, "client"},
		{"current version 0", "PUT", "/images/win11/versions/current", map[string]any{"version": 0}, nil, 400, "version is required", "version"},
		{"current unknown version", "PUT", "/images/win11/versions/current", map[string]any{"version": 9}, nil, 404, "no version 9", "version"},
		{"delete version not a number", "DELETE", "/images/win11/versions/latest", nil, nil, 400, "want a version number", ""},
		{"delete current version", "DELETE", "/images/win11/versions/1", nil, nil, 409, "is current", ""},
		{"login unknown field", "POST", "/auth/login", `{"username":"alice","password":"alice-pw","otp":1}`, nil, 400, "unknown field", "otp"},
		{"login no password", "POST", "/auth/login", `{"username":"alice"}`, nil, 400, "password", "password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, audits, calls := e.st.snapshot(), len(e.st.auditActions()), len(e.stor.storageCalls())
			e.t = t
			e.wantError(e.do(c.method, c.path, tok, c.body, c.hdr...), c.status, c.msg, c.field)
			if e.st.snapshot() != before {
				t.Error("the store changed")
			}
			if n := len(e.st.auditActions()); n != audits {
				t.Errorf("audit grew by %d", n-audits)
			}
			if n := len(e.stor.storageCalls()); n != calls && c.status != 409 && c.status != 404 {
				t.Errorf("storage called: %v", e.stor.storageCalls()[calls:])
			}
		})
	}
}

func TestQueryParams(t *testing.T) {
	e := newEnv(t)
	tok := e.login("vera").AccessToken
	e.wantError(e.do("GET", "/sessions?state=booting", tok, nil), 400, "want active, done or failed", "state")
	e.wantError(e.do("GET", "/sessions?limit=0", tok, nil), 400, "limit", "limit")
	e.wantError(e.do("GET", "/audit?limit=x", tok, nil), 400, "limit", "limit")
	e.wantError(e.do("GET", "/sessions/abc", tok, nil), 400, "session id", "")
	e.wantError(e.do("GET", "/sessions/12", tok, nil), 404, "no session 12", "")
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice").AccessToken
	e.wantError(e.do("GET", "/nothing", tok, nil), 404, "no such endpoint", "")
	e.wantError(e.do("GET", "/clients/pc1/volume/extra", tok, nil), 404, "no such endpoint", "")
	w := e.do("PATCH", "/clients/pc1", tok, nil)
	e.wantError(w, 405, "method not allowed", "")
	if got := w.Header().Get("Allow"); got != "DELETE, GET, PUT" {
		t.Errorf("Allow = %q", got)
	}
	w = e.do("GET", "/auth/login", "", nil)
	if w.Code != 405 || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET auth/login: %d %q", w.Code, w.Header().Get("Allow"))
	}
	if got := e.do("PUT", "/images/win11/versions/3", tok, nil); got.Code != 405 || got.Header().Get("Allow") != "DELETE" {
		t.Errorf("PUT versions/3: %d %q", got.Code, got.Header().Get("Allow"))
	}
}
