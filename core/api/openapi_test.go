package api

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPICoversRoutes: every route is in openapi.json with its method,
// roles and auth as the code has them, and the document has nothing more.
func TestOpenAPICoversRoutes(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", "/openapi.json", "", nil) // no token needed
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Servers []struct{ URL string }                `json:"servers"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	e.want(w, http.StatusOK, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") || len(doc.Servers) != 1 || doc.Servers[0].URL != Prefix {
		t.Fatalf("openapi %q servers %+v", doc.OpenAPI, doc.Servers)
	}
	seen := map[string]bool{}
	for _, rt := range e.api.routes() {
		key := rt.method + " " + rt.path
		seen[key] = true
		raw, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]
		if !ok {
			t.Errorf("%s is not in openapi.json", key)
			continue
		}
		var op struct {
			Security    *[]any `json:"security"`
			Description string `json:"description"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		public := op.Security != nil && len(*op.Security) == 0
		if public != (rt.role == roleNone) {
			t.Errorf("%s: public in openapi.json = %v, in the code %v", key, public, rt.role == roleNone)
		}
		if rt.role != roleNone && !strings.Contains(op.Description, "Role: "+rt.role.String()+".") {
			t.Errorf("%s: openapi.json does not say role %s", key, rt.role)
		}
	}
	for path, item := range doc.Paths {
		for _, m := range slices.Sorted(maps.Keys(item)) {
			if m == "parameters" {
				continue
			}
			if key := strings.ToUpper(m) + " " + path; !seen[key] {
				t.Errorf("openapi.json describes %s, which is no route", key)
			}
		}
	}
	// Every $ref resolves.
	var all map[string]any
	if err := json.Unmarshal(openAPI, &all); err != nil {
		t.Fatal(err)
	}
	comps := all["components"].(map[string]any)
	checkRefs(t, all, comps)
}

func checkRefs(t *testing.T, v any, comps map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
			if group, ok := comps[parts[0]].(map[string]any); !ok || group[parts[1]] == nil {
				t.Errorf("unresolved $ref %s", ref)
			}
		}
		for _, y := range x {
			checkRefs(t, y, comps)
		}
	case []any:
		for _, y := range x {
			checkRefs(t, y, comps)
		}
	}
}
