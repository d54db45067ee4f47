package httpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/dls-project/dls/core/sessions"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// This file serves what booting machines fetch and post, without API
// tokens:
//
//	GET  /boot/{mac}.ipxe       the client's iPXE script (MAC with - or :);
//	                            ?platform=efi|pcbios when the caller knows
//	GET  /boot/files/{path...}  a file under boot.files (kernels, initrds),
//	                            with Range requests
//	POST /boot/done             the OS confirms its boot: form field token,
//	                            or JSON {"token": "..."}
//
// What is one machine's is answered only to the address bound to that
// machine's boot (its DHCP lease, or in proxy mode the first requester
// after DLS's proxy answer; see core/bootbind):
//
//   - its script (the host's Script decides);
//   - files under boot.files/clients/<client>/, served at
//     /boot/files/clients/<client>/...: per-client kernels, initrds,
//     answers. Everything else under boot.files (iPXE, shim, GRUB builds,
//     shared kernels) stays open to any address;
//   - /boot/done with its token.
//
// Any other requester gets exactly what a missing thing gets: 404 for a
// script or a file, and for /boot/done the unknown token's 403 "token not
// valid", so a requester cannot tell a bound machine's token from a made-up
// one. Refusals are counted in dls_boot_refused_total{reason} and change
// nothing: no event, no boot session, no token spent.

// BootScripts renders clients' iPXE scripts (*hostservices.Services).
type BootScripts interface {
	// Script returns the script of the machine q.MAC for the requester
	// q.Peer; Found is false for an unknown MAC or a requester that is not
	// bound to its boot.
	Script(ctx context.Context, q host.ScriptQuery) (host.Script, error)
}

// BootConfirmer confirms boots (*sessions.Tracker). Its errors wrap the
// sessions.ErrToken* values.
type BootConfirmer interface {
	Confirm(ctx context.Context, token, remote string) error
	// TokenClient returns the client of the session holding token, without
	// spending it; found is false when no session holds it.
	TokenClient(ctx context.Context, token string) (client string, found bool, err error)
}

// BootBinding tells which requester is bound to a client's boot
// (*hostservices.Services), and counts refusals.
type BootBinding interface {
	// BoundClient reports whether peer is the address bound to the boot
	// of client.
	BoundClient(ctx context.Context, client, peer string) bool
	// Refused counts a refusal in dls_boot_refused_total{reason}.
	Refused(reason string)
}

// Reasons the handlers count (hostservices.Refused* spell the same).
const (
	refusedFile = "file_not_bound"
	refusedDone = "done_not_bound"
)

// ClientFiles is the folder under boot.files (and the path under
// /boot/files/) whose sub-folder <client> is that client's alone.
const ClientFiles = "clients"

// BootOptions are what the /boot handlers serve from.
type BootOptions struct {
	// Scripts renders scripts (required).
	Scripts BootScripts
	// Events receives script_served and file_served events
	// (*hostservices.Services, which keeps them and feeds the sessions).
	Events host.Events
	// Confirmer answers POST /boot/done; nil: 503.
	Confirmer BootConfirmer
	// Binding decides who gets per-client files and /boot/done; nil: no
	// one (both refused).
	Binding BootBinding
	// Files is the folder served at /boot/files/ (boot.files); "": none.
	Files  string
	Logger hclog.Logger
	// Now stamps events; nil: time.Now.
	Now func() time.Time
}

// MaxDoneBody bounds the body of POST /boot/done.
const MaxDoneBody = 4 << 10

// BootHandler returns the /boot handlers, to mount at "/boot/" beside
// Handler's.
func BootHandler(o BootOptions) http.Handler {
	mux := http.NewServeMux()
	RegisterBoot(mux, o)
	return mux
}

// RegisterBoot adds the /boot handlers to mux.
func RegisterBoot(mux *http.ServeMux, o BootOptions) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &boot{o: o}
	mux.HandleFunc("GET /boot/files/{path...}", b.file)
	mux.HandleFunc("GET /boot/{script}", b.script)
	mux.HandleFunc("POST /boot/done", b.done)
}

type boot struct{ o BootOptions }

func (b *boot) report(ctx context.Context, e host.Event) {
	if b.o.Events == nil {
		return
	}
	e.Time = b.o.Now()
	if err := b.o.Events.Report(ctx, []host.Event{e}); err != nil {
		b.o.Logger.Warn("boot event not recorded", "type", e.Type, "error", err)
	}
}

func remoteIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func (b *boot) script(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("script"), ".ipxe")
	if !ok {
		http.NotFound(w, r)
		return
	}
	sc, err := b.o.Scripts.Script(r.Context(), host.ScriptQuery{MAC: name, Peer: remoteIP(r), Platform: r.URL.Query().Get("platform")})
	switch {
	case err != nil:
		b.o.Logger.Error("boot script not served", "mac", name, "error", err)
		http.Error(w, "boot script unavailable", http.StatusInternalServerError)
		return
	case !sc.Found:
		http.Error(w, "no boot script here", http.StatusNotFound)
		return
	}
	client, script := sc.Client, sc.Body
	if r.Method == http.MethodGet {
		// Recorded before the answer: a session that starts here resets a
		// non-persistent client's volume before the machine can log in.
		mac, _ := store.CanonicalMAC(name)
		b.report(r.Context(), host.Event{
			Type: host.EventScriptServed, MAC: mac, Client: client, Address: remoteIP(r),
			Attrs: map[string]string{"via": "http", host.AttrFile: r.URL.Path, host.AttrRemote: r.RemoteAddr},
		})
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // it may hold a boot token
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(script))
}

// filePath reports whether p may name a file under boot.files: relative,
// clean (no "", ".", ".." elements), without NUL or backslash.
func filePath(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.ContainsAny(p, "\x00\\")
}

func (b *boot) file(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	if b.o.Files == "" || !filePath(p) {
		http.NotFound(w, r)
		return
	}
	if client, ok := clientOf(p); ok && !b.bound(r, client) {
		b.refused(refusedFile)
		http.NotFound(w, r)
		return
	}
	// os.Root confines the lookup: no "..", no symlink leaving the folder.
	// Opened per request, so a folder created or replaced later is seen.
	root, err := os.OpenRoot(b.o.Files)
	if err != nil {
		b.o.Logger.Warn("boot files unavailable", "dir", b.o.Files, "error", err)
		http.NotFound(w, r)
		return
	}
	defer root.Close()
	f, err := root.Open(p)
	if err != nil {
		b.o.Logger.Debug("boot file refused", "path", p, "error", err)
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	ctype := contentType(p)
	w.Header().Set("Content-Type", ctype)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	http.ServeContent(sw, r, path.Base(p), st.ModTime(), f)
	if r.Method == http.MethodGet && (sw.status == http.StatusOK || sw.status == http.StatusPartialContent) {
		attrs := map[string]string{host.AttrFile: p, "via": "http", host.AttrRemote: r.RemoteAddr}
		if rg := r.Header.Get("Range"); rg != "" && sw.status == http.StatusPartialContent {
			attrs["range"] = rg
		}
		b.report(r.Context(), host.Event{Type: host.EventFileServed, Address: remoteIP(r), Attrs: attrs})
	}
}

// contentType is the Content-Type of the boot file p. An EFI binary is
// application/efi whatever the system's MIME tables say: UEFI HTTP boot
// (edk2's HttpBootCheckImageType) takes that type as an EFI image before
// it looks at the name's extension.
func contentType(p string) string {
	ext := path.Ext(p)
	if strings.EqualFold(ext, ".efi") {
		return "application/efi"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// clientOf returns the client a per-client file path belongs to:
// clients/<client>/... ("clients" itself and clients/<client> alone, a
// folder, are per-client too: nobody lists them).
func clientOf(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, ClientFiles)
	if !ok || (rest != "" && rest[0] != '/') {
		return "", false
	}
	client, _, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	return client, true
}

// bound reports whether the request comes from the address bound to
// client's boot.
func (b *boot) bound(r *http.Request, client string) bool {
	return b.o.Binding != nil && client != "" && b.o.Binding.BoundClient(r.Context(), client, remoteIP(r))
}

func (b *boot) refused(reason string) {
	if b.o.Binding != nil {
		b.o.Binding.Refused(reason)
	}
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// doneStatus maps Confirm's refusals to HTTP.
func doneStatus(err error) (int, string) {
	switch {
	case err == nil:
		return http.StatusOK, "ok"
	case errors.Is(err, sessions.ErrTokenMissing):
		return http.StatusBadRequest, "token missing"
	case errors.Is(err, sessions.ErrTokenUnknown):
		return http.StatusForbidden, "token not valid"
	case errors.Is(err, sessions.ErrTokenReused):
		return http.StatusConflict, "token already used"
	case errors.Is(err, sessions.ErrTokenExpired):
		return http.StatusGone, "token expired"
	}
	return http.StatusInternalServerError, "boot not confirmed"
}

func (b *boot) done(w http.ResponseWriter, r *http.Request) {
	if b.o.Confirmer == nil {
		http.Error(w, "boot confirmation unavailable", http.StatusServiceUnavailable)
		return
	}
	remote := remoteIP(r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxDoneBody))
	if err != nil {
		// Counted like a missing token: no token could be read.
		_ = b.o.Confirmer.Confirm(r.Context(), "", remote)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "body unreadable", http.StatusBadRequest)
		return
	}
	tok := doneToken(r.Header.Get("Content-Type"), body)
	w.Header().Set("Cache-Control", "no-store")
	if tok != "" {
		// From another address than the one bound to the token's client's
		// boot: the unknown token's answer, and the token stays unspent.
		client, found, err := b.o.Confirmer.TokenClient(r.Context(), tok)
		if err != nil {
			b.o.Logger.Error("boot confirmation failed", "remote", remote, "error", err)
			http.Error(w, "boot not confirmed", http.StatusInternalServerError)
			return
		}
		if found && !b.bound(r, client) {
			b.refused(refusedDone)
			b.o.Logger.Info("boot confirmation refused: requester not bound to the client's boot", "client", client, "remote", remote)
			code, msg := doneStatus(sessions.ErrTokenUnknown)
			http.Error(w, msg, code)
			return
		}
	}
	err = b.o.Confirmer.Confirm(r.Context(), tok, remote)
	code, msg := doneStatus(err)
	if code == http.StatusInternalServerError {
		b.o.Logger.Error("boot confirmation failed", "remote", remote, "error", err)
	}
	http.Error(w, msg, code)
}

// doneToken reads the token from a form body (busybox wget --post-data
// sends application/x-www-form-urlencoded) or a JSON object (by its
// content type, or a body that starts with "{", as curl -d sends it).
func doneToken(contentType string, body []byte) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	trimmed := bytes.TrimSpace(body)
	if mt == "application/json" || bytes.HasPrefix(trimmed, []byte("{")) {
		var v struct {
			Token string `json:"token"`
		}
		if json.Unmarshal(trimmed, &v) != nil {
			return ""
		}
		return strings.TrimSpace(v.Token)
	}
	vals, err := url.ParseQuery(string(trimmed))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(vals.Get("token"))
}
