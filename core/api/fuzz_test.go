package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// fuzzEndpoints are the API's JSON request bodies, as an admin sends them.
var fuzzEndpoints = []struct{ method, path string }{
	{"POST", "/auth/login"},
	{"POST", "/auth/refresh"},
	{"POST", "/auth/logout"},
	{"POST", "/clients"},
	{"PUT", "/clients/pc-01"},
	{"POST", "/clients/pc-01/volume"},
	{"POST", "/clients/pc-01/wake"},
	{"POST", "/images"},
	{"PUT", "/images/win11"},
	{"PUT", "/images/win11/versions/current"},
	{"POST", "/restore"},
}

// FuzzJSONBodies sends arbitrary bodies to every endpoint that reads JSON:
// no panic, no 5xx, every refusal a JSON error, and nothing accepted that
// is not JSON.
func FuzzJSONBodies(f *testing.F) {
	for i, seed := range []string{
		`{"username":"alice","password":"alice-pw"}`,
		`{"refresh_token":"x"}`,
		`{"name":"pc-02","mac":"52:54:00:00:00:02","image":"win11"}`,
		`{"mac":"52:54:00:00:00:01","image":"win11","persistent":false}`,
		`{"action":"reset"}`,
		`{"name":"lab","storage":"tank","source":"/img/lab.raw"}`,
		`{"version":1}`,
		`{"format":"dls-backup","version":1,"clients":[]}`,
		`{"name":"\u0000","mac":"zz"}`,
		`[1,2,3]`,
		`{"a":`,
		`{"name":"` + string(make([]byte, 300)) + `"}`,
	} {
		f.Add(uint8(i), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		e := newEnv(t)
		ep := fuzzEndpoints[int(which)%len(fuzzEndpoints)]
		tok := ""
		if ep.path != "/auth/login" && ep.path != "/auth/refresh" && ep.path != "/auth/logout" {
			tok = e.login("alice").AccessToken
			e.mustCreateClient(tok, "pc-01", "52:54:00:00:00:01")
		}
		w := e.do(ep.method, ep.path, tok, body)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s answered %d to %q: %s", ep.method, ep.path, w.Code, body, w.Body)
		}
		if w.Code >= 400 {
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: refusal %d is not a JSON error: %q", ep.method, ep.path, w.Code, w.Body)
			}
			return
		}
		// A body of only white space is no body (endpoints with optional
		// bodies take it as empty, as encoding/json would).
		if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
			t.Fatalf("%s %s accepted (%d) a body that is not JSON: %q", ep.method, ep.path, w.Code, body)
		}
	})
}
