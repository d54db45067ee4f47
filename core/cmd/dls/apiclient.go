package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// defaultServer is where the API commands go without --server, $DLS_SERVER
// or a login: the host's default http listener.
const defaultServer = "http://127.0.0.1:9180"

// apiPrefix is where the admin API lives on the server.
const apiPrefix = "/api/v1"

// refreshSkew: an access token that expires within this is refreshed
// before use rather than sent to be refused.
const refreshSkew = 30 * time.Second

// maxAnswerBytes bounds what the CLI reads of an answer (a backup is at
// most 64 MiB).
const maxAnswerBytes = 128 << 20

// apiConn is a connection to one server's admin API, with the caller's
// credentials when logged in.
type apiConn struct {
	cli      *cli
	server   string
	http     *http.Client
	credPath string
	// creds is nil until login (for the login command itself).
	creds *credentials
	// tlsCA and insecure are the TLS settings in use.
	tlsCA    string
	insecure bool
	// refreshed: the token was refreshed in this run; a second 401 is
	// final.
	refreshed bool
}

// apiError is an error answer of the API: its message is what the user
// sees.
type apiError struct {
	Status  int
	Message string
	Field   string
}

func (e *apiError) Error() string { return e.Message }

// connect prepares a connection to the server --server names (else
// $DLS_SERVER, else the logged-in one, else defaultServer). With needLogin,
// the credentials must be for that server.
func (c *cli) connect(needLogin bool) (*apiConn, error) {
	f := &c.api
	path, err := credentialsPath(c.getenv)
	if err != nil {
		return nil, err
	}
	creds, err := loadCredentials(path, c.warn)
	if err != nil {
		return nil, err
	}
	server := f.server
	if server == "" {
		server = c.getenv("DLS_SERVER")
	}
	if server == "" && creds != nil {
		server = creds.Server
	}
	if server == "" {
		server = defaultServer
	}
	if server, err = normalizeServer(server); err != nil {
		return nil, err
	}
	if creds != nil && creds.Server != server {
		if needLogin {
			return nil, fmt.Errorf("logged in to %s, not %s: run dls login --server %s", creds.Server, server, server)
		}
		creds = nil
	}
	if needLogin && creds == nil {
		return nil, fmt.Errorf("not logged in to %s: run dls login", server)
	}
	caFile, insecure := f.tlsCA, f.insecure
	if creds != nil {
		if caFile == "" {
			caFile = creds.TLSCA
		}
		insecure = insecure || creds.Insecure
	}
	hc, err := httpClient(caFile, insecure)
	if err != nil {
		return nil, err
	}
	return &apiConn{cli: c, server: server, http: hc, credPath: path, creds: creds, tlsCA: caFile, insecure: insecure}, nil
}

// normalizeServer checks a server URL and drops a trailing slash.
func normalizeServer(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", usagef("server %q: want http://HOST:PORT or https://HOST:PORT", s)
	}
	return u.Scheme + "://" + u.Host, nil
}

// httpClient trusts caFile's certificates (instead of the system's) when
// given, or no certificate at all with insecure.
func httpClient(caFile string, insecure bool) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" || insecure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", caFile)
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: tr}, nil
}

// absPath makes a --tls-ca path absolute, so that it still works from
// another directory once stored with the credentials.
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// call sends method path (under /api/v1) with the access token, refreshing
// it first when it expired, and once more when the server refuses it.
// body nil sends none, []byte as is, anything else as JSON. It answers the
// body of a 2xx answer, or an *apiError.
func (a *apiConn) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	if a.creds == nil {
		return nil, fmt.Errorf("not logged in to %s: run dls login", a.server)
	}
	if !a.cli.now().Add(refreshSkew).Before(a.creds.Expiry) {
		if err := a.refresh(ctx); err != nil {
			return nil, err
		}
	}
	b, err := a.send(ctx, method, path, body, a.creds.AccessToken)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && !a.refreshed {
		if err := a.refresh(ctx); err != nil {
			return nil, err
		}
		b, err = a.send(ctx, method, path, body, a.creds.AccessToken)
	}
	return b, err
}

// upload is a request body streamed from a file (a raw disk image), sent
// as application/octet-stream; a retry reads it again from the start.
type upload struct {
	f    *os.File
	size int64
}

// send is one request; token "" sends none.
func (a *apiConn) send(ctx context.Context, method, path string, body any, token string) ([]byte, error) {
	var rd io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case upload:
		// Never read whole into memory: the transport copies it in small
		// pieces. NopCloser: the transport closes bodies, the caller the
		// file.
		rd = io.NopCloser(io.NewSectionReader(b.f, 0, b.size))
		contentType = "application/octet-stream"
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.server+apiPrefix+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if up, ok := body.(upload); ok {
		req.ContentLength = up.size
		// The server answers a refusal (no image, expired token) before
		// the file is sent.
		req.Header.Set("Expect", "100-continue")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "dls/"+userAgentVersion())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("cannot reach %s: %v (is dls serve running there? --server or $DLS_SERVER pick another)", a.server, op.Err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return out, nil
	}
	var eb struct {
		Error string `json:"error"`
		Field string `json:"field"`
	}
	if json.Unmarshal(out, &eb) == nil && eb.Error != "" {
		return nil, &apiError{Status: resp.StatusCode, Message: eb.Error, Field: eb.Field}
	}
	text := strings.TrimSpace(string(out))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return nil, &apiError{Status: resp.StatusCode, Message: fmt.Sprintf("%s %s: server answered %s: %s", method, path, resp.Status, text)}
}

// refresh trades the refresh token for a new pair and stores it. A lock
// on the credentials file keeps two dls commands from presenting the same
// refresh token: the server would take the second for a stolen token's
// replay and revoke every token of the user.
func (a *apiConn) refresh(ctx context.Context) error {
	a.refreshed = true
	unlock, err := lockFile(a.credPath + ".lock")
	if err != nil {
		return fmt.Errorf("lock credentials: %w", err)
	}
	defer unlock()
	if cur, err := loadCredentials(a.credPath, nil); err == nil && cur != nil && cur.Server == a.creds.Server && cur.RefreshToken != a.creds.RefreshToken {
		// Another dls refreshed meanwhile: take its tokens.
		a.creds = cur
		if a.cli.now().Add(refreshSkew).Before(cur.Expiry) {
			return nil
		}
	}
	b, err := a.send(ctx, "POST", "/auth/refresh", map[string]string{"refresh_token": a.creds.RefreshToken}, "")
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		return fmt.Errorf("logged out of %s (%s): run dls login", a.server, ae.Message)
	}
	if err != nil {
		return fmt.Errorf("refresh the access token: %w", err)
	}
	var pair tokenPair
	if err := json.Unmarshal(b, &pair); err != nil || pair.AccessToken == "" || pair.RefreshToken == "" {
		return fmt.Errorf("refresh the access token: unexpected answer %.100q", b)
	}
	a.creds.set(pair, a.cli.now())
	return saveCredentials(a.credPath, a.creds)
}
