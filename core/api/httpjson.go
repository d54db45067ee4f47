package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/storage"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 1 << 20

// apiError is an error with the status and message the client sees.
type apiError struct {
	status int
	msg    string
	field  string
	// header, when set, is added to the response (Retry-After, ...).
	header http.Header
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func fieldError(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...), field: field}
}

// storageError marks an error from a storage plugin, so that one without a
// known sentinel answers 502 rather than 500.
type storageError struct{ err error }

func (e storageError) Error() string { return e.err.Error() }
func (e storageError) Unwrap() error { return e.err }

// reworded is err said differently (without a repeated prefix), its
// sentinels kept for errors.Is.
type reworded struct {
	msg string
	err error
}

func (e reworded) Error() string { return e.msg }
func (e reworded) Unwrap() error { return e.err }

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// writeErr answers err: an *apiError as it says, store and storage
// sentinels with their status, anything else 500 (or 502 from a storage
// plugin).
func (a *API) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		for k, vs := range ae.header {
			w.Header()[k] = vs
		}
		writeError(w, ae.status, ae.msg, ae.field)
		return
	}
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, storage.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, store.ErrConflict), errors.Is(err, storage.ErrExists), errors.Is(err, storage.ErrInUse):
		status = http.StatusConflict
	case errors.Is(err, store.ErrInvalid), errors.Is(err, storage.ErrInvalidName):
		status = http.StatusBadRequest
	case errors.Is(err, storage.ErrNoSpace):
		status = http.StatusInsufficientStorage
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	case errors.As(err, new(storageError)):
		status = http.StatusBadGateway
	}
	if status >= 500 {
		a.logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	writeError(w, status, err.Error(), "")
}

func writeError(w http.ResponseWriter, status int, msg, field string) {
	writeJSON(w, status, errorBody{Error: msg, Field: field})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// decode reads r's JSON body into v: at most MaxBodyBytes, content type
// application/json, no unknown fields, one value. An empty body is
// allowed (v left as is) when optional.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", mbe.Limit)
		}
		return errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return errorf(http.StatusBadRequest, "request body is empty; want a JSON object")
	}
	if ct := r.Header.Get("Content-Type"); ct == "" {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type is missing; want application/json")
	} else if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %q is not supported; want application/json", ct)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "malformed JSON: unexpected data after the object")
	}
	return nil
}

// jsonError turns a decoding error into a message naming the field.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return errorf(http.StatusBadRequest, "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "malformed JSON: unexpected end of input")
	case errors.As(err, &te):
		if te.Field == "" {
			return errorf(http.StatusBadRequest, "request body: want a JSON object, not %s", te.Value)
		}
		return fieldError(te.Field, "field %s: want %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, err := strconv.Unquote(name); err == nil {
			name = f
		}
		return fieldError(name, "unknown field %q", name)
	}
	return errorf(http.StatusBadRequest, "malformed JSON: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "uint", "uint8", "uint16", "uint32", "uint64":
		return "a non-negative integer"
	case "int", "int8", "int16", "int32", "int64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	}
	return k
}

// remoteIP is the request's source address, without the port.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// queryLimit parses ?limit= (default def, at most max).
func queryLimit(r *http.Request, def, max int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("limit %q: want a number from 1 to %d", s, max), field: "limit"}
	}
	return n, nil
}
