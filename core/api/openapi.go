package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3.1 description, written by hand;
// TestOpenAPICoversRoutes keeps it in step with the routes.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI: GET openapi.json, served without a token (it describes the
// API, it holds no data).
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
	return nil
}
