package httpserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/httpserver"
	"github.com/dls-project/dls/core/sessions"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const iqn = "iqn.2026-11.io.dls"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// bootEnv is the host's boot path end to end: SQLite store, boot-session
// tracker, host services and the /boot handlers on a test server.
type bootEnv struct {
	t      *testing.T
	srv    *httptest.Server
	st     store.Store
	tr     *sessions.Tracker
	svc    *hostservices.Services
	reg    *prometheus.Registry
	clk    *clock
	files  string
	kernel []byte
}

func newBootEnv(t *testing.T) *bootEnv {
	t.Helper()
	return newBootEnvWith(t, nil)
}

// newBootEnvWith is newBootEnv with the boot settings changed by mutate.
func newBootEnvWith(t *testing.T, mutate func(*hostservices.Boot)) *bootEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, img := range []store.Image{
		{Name: "lab", Storage: "tank"},
		{Name: "linux", Storage: "tank", Boot: &store.BootProfile{Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: "iscsi_auto root=/dev/sda rw", Confirm: true}},
	} {
		if err := st.PutImage(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []store.Client{
		{Name: "pc-01", MAC: "52:54:00:aa:00:01", Image: "lab", Persistent: true},
		{Name: "pc-02", MAC: "52:54:00:aa:00:02", Image: "linux", Persistent: true},
	} {
		if err := st.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	e := &bootEnv{t: t, st: st, reg: prometheus.NewRegistry(), clk: &clock{t: time.Now()}}
	e.tr, err = sessions.New(ctx, sessions.Options{
		Sessions: st, Clients: st, Images: st, StageTimeout: time.Minute,
		Registerer: e.reg, Logger: hclog.NewNullLogger(), Now: e.clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}

	// boot.files: a kernel, an initrd in a sub-folder, a symlink that
	// stays inside and one that leaves; a secret beside the folder.
	e.files = filepath.Join(dir, "boot")
	e.kernel = make([]byte, 300<<10)
	_, _ = rand.Read(e.kernel)
	mustWrite(t, filepath.Join(e.files, "linux", "vmlinuz"), e.kernel)
	mustWrite(t, filepath.Join(e.files, "linux", "initrd.img"), []byte("initrd"))
	mustWrite(t, filepath.Join(dir, "secret"), []byte("TOP SECRET"))
	if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(e.files, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(e.files, "escape-relative")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(e.files, "outdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("linux/initrd.img", filepath.Join(e.files, "initrd-link")); err != nil {
		t.Fatal(err)
	}

	e.srv = httptest.NewUnstartedServer(nil)
	url := "http://" + e.srv.Listener.Addr().String()
	boot := hostservices.Boot{URL: url, IQNPrefix: iqn, ServerAddress: "127.0.0.1"}
	if mutate != nil {
		mutate(&boot)
	}
	e.svc = hostservices.New(boot, st, nil, hclog.NewNullLogger(), hostservices.WithSessions(e.tr))
	if err := e.svc.RegisterMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", httpserver.Handler(e.reg, &readiness{}, time.Second))
	mux.Handle("/boot/", httpserver.BootHandler(httpserver.BootOptions{
		Scripts: e.svc, Events: e.svc, Confirmer: e.tr, Binding: e.svc, Files: e.files, Logger: hclog.NewNullLogger(), Now: e.clk.Now,
	}))
	e.srv.Config.Handler = mux
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

func mustWrite(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lease commits a bound lease of addr for mac through the host services,
// as the DHCP plugin does before its ACK: addr is then bound to mac's boot.
func (e *bootEnv) lease(mac, addr string) {
	e.t.Helper()
	rs, err := e.svc.Commit(context.Background(), []host.Lease{{Pool: "lo", Address: addr, MAC: mac, Expires: time.Now().Add(time.Hour), State: host.LeaseBound}})
	if err != nil || !rs[0].OK {
		e.t.Fatalf("lease %s for %s: %+v %v", addr, mac, rs, err)
	}
}

// do sends a request from 127.0.0.1 and returns the answer with its body
// read.
func (e *bootEnv) do(method, path string, header map[string]string, body string) (*http.Response, string) {
	e.t.Helper()
	return e.doFrom("127.0.0.1", method, path, header, body)
}

// doFrom sends a request from the local address from (127.0.0.2 is a
// second machine: Linux answers all of 127/8 on lo).
func (e *bootEnv) doFrom(from, method, path string, header map[string]string, body string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	client := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

// raw sends a request line as written, with no client-side cleaning.
func (e *bootEnv) raw(target string) (int, string) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	b, _ := io.ReadAll(conn)
	resp := string(b)
	var code int
	fmt.Sscanf(resp, "HTTP/1.1 %d", &code)
	return code, resp
}

func (e *bootEnv) confirmations(result string) float64 {
	return testutil.ToFloat64(counterVec(e.t, e.reg, "dls_boot_confirmations_total", "result", result))
}

// counterVec finds one series in a registry as a collector testutil reads.
func counterVec(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: "copy"}, m.GetCounter().GetValue)
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return nil
}

func (e *bootEnv) session(client string) store.Session {
	e.t.Helper()
	ss, err := e.st.ListSessions(context.Background(), store.SessionFilter{Client: client, Limit: 1})
	if err != nil || len(ss) == 0 {
		e.t.Fatalf("no session of %s: %v", client, err)
	}
	return ss[0]
}

func TestBootScriptServed(t *testing.T) {
	e := newBootEnv(t)
	e.lease("52:54:00:aa:00:01", "127.0.0.1")
	resp, body := e.do("GET", "/boot/52-54-00-aa-00-01.ipxe", nil, "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET script: %s %v", resp.Status, resp.Header)
	}
	want := "#!ipxe\n# DLS: pc-01 (52:54:00:aa:00:01) boots its volume\nset initiator-iqn " + iqn + ":initiator:pc-01\nsanboot iscsi:127.0.0.1:::0:" + iqn + ":pc-01\n"
	if body != want || resp.ContentLength != int64(len(want)) {
		t.Errorf("script (length %d):\n%s\nwant:\n%s", resp.ContentLength, body, want)
	}
	// The session started at script, from the request's address.
	s := e.session("pc-01")
	if _, ok := s.Stages["script"]; !ok || s.State != store.SessionActive || s.Address != "127.0.0.1" || s.MAC != "52:54:00:aa:00:01" {
		t.Errorf("session after the script: %+v", s)
	}
	rec := e.svc.Recent()
	if len(rec) != 1 || rec[0].Type != host.EventScriptServed || rec[0].Client != "pc-01" || rec[0].Address != "127.0.0.1" {
		t.Errorf("recent events %+v", rec)
	}

	// The colon spelling, any case.
	if resp, body := e.do("GET", "/boot/52:54:00:AA:00:01.ipxe", nil, ""); resp.StatusCode != 200 || body != want {
		t.Errorf("colon spelling: %s %q", resp.Status, body)
	}
	// HEAD records nothing.
	if resp, _ := e.do("HEAD", "/boot/52-54-00-aa-00-01.ipxe", nil, ""); resp.StatusCode != 200 {
		t.Errorf("HEAD: %s", resp.Status)
	}
	if n := len(e.svc.Recent()); n != 2 {
		t.Errorf("%d events after GET, GET, HEAD; want 2", n)
	}
	for _, p := range []string{"/boot/52-54-00-ff-ff-ff.ipxe", "/boot/nonsense.ipxe", "/boot/52-54-00-aa-00-01", "/boot/52-54-00-aa-00-01.txt", "/boot/done"} {
		if resp, _ := e.do("GET", p, nil, ""); resp.StatusCode != 404 {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	// The host's other endpoints are still there.
	if resp, _ := e.do("GET", "/healthz", nil, ""); resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
}

func TestBootScriptPlatform(t *testing.T) {
	e := newBootEnv(t)
	e.lease("52:54:00:aa:00:02", "127.0.0.1")
	_, efi := e.do("GET", "/boot/52-54-00-aa-00-02.ipxe?platform=efi", nil, "")
	_, bios := e.do("GET", "/boot/52-54-00-aa-00-02.ipxe?platform=pcbios", nil, "")
	_, unknown := e.do("GET", "/boot/52-54-00-aa-00-02.ipxe", nil, "")
	if !strings.Contains(efi, " initrd=initrd.img ") || strings.Contains(bios, "initrd=") || !strings.Contains(unknown, "iseq ${platform} efi") {
		t.Errorf("efi:\n%s\nbios:\n%s\nunknown:\n%s", efi, bios, unknown)
	}
	// One boot, one token, whichever script was fetched.
	tok := regexp.MustCompile(`dls\.token=(\S+)`)
	a, b := tok.FindStringSubmatch(efi), tok.FindStringSubmatch(unknown)
	if a == nil || b == nil || a[1] != b[1] {
		t.Errorf("tokens %v and %v, want one", a, b)
	}
}

func TestBootFiles(t *testing.T) {
	e := newBootEnv(t)
	resp, body := e.do("GET", "/boot/files/linux/vmlinuz", nil, "")
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(e.kernel)) || body != string(e.kernel) ||
		resp.Header.Get("Accept-Ranges") != "bytes" || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET kernel: %s, length %d, %v", resp.Status, resp.ContentLength, resp.Header)
	}
	resp, body = e.do("GET", "/boot/files/linux/vmlinuz", map[string]string{"Range": "bytes=1000-1999"}, "")
	if resp.StatusCode != 206 || resp.ContentLength != 1000 || body != string(e.kernel[1000:2000]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(e.kernel)) {
		t.Errorf("range: %s, %v, %d bytes", resp.Status, resp.Header, len(body))
	}
	resp, body = e.do("GET", "/boot/files/linux/vmlinuz", map[string]string{"Range": "bytes=-10"}, "")
	if resp.StatusCode != 206 || body != string(e.kernel[len(e.kernel)-10:]) {
		t.Errorf("suffix range: %s", resp.Status)
	}
	resp, _ = e.do("GET", "/boot/files/linux/vmlinuz", map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(e.kernel)+5)}, "")
	if resp.StatusCode != 416 {
		t.Errorf("unsatisfiable range: %s", resp.Status)
	}
	resp, body = e.do("HEAD", "/boot/files/linux/initrd.img", nil, "")
	if resp.StatusCode != 200 || resp.ContentLength != 6 || body != "" {
		t.Errorf("HEAD initrd: %s %d %q", resp.Status, resp.ContentLength, body)
	}
	// A symlink that stays inside is followed.
	if resp, body := e.do("GET", "/boot/files/initrd-link", nil, ""); resp.StatusCode != 200 || body != "initrd" {
		t.Errorf("inner symlink: %s %q", resp.Status, body)
	}

	var served []string
	for _, ev := range e.svc.Recent() {
		if ev.Type == host.EventFileServed {
			served = append(served, ev.Attrs["file"]+" "+ev.Attrs["range"]+" "+ev.Address)
		}
	}
	want := []string{"linux/vmlinuz  127.0.0.1", "linux/vmlinuz bytes=1000-1999 127.0.0.1", "linux/vmlinuz bytes=-10 127.0.0.1", "initrd-link  127.0.0.1"}
	if strings.Join(served, "|") != strings.Join(want, "|") {
		t.Errorf("file_served events %q, want %q", served, want)
	}
}

func TestBootFilesRefuseEscapes(t *testing.T) {
	e := newBootEnv(t)
	for _, target := range []string{
		"/boot/files/escape",                      // absolute symlink out of the folder
		"/boot/files/escape-relative",             // relative symlink out of it
		"/boot/files/outdir/secret",               // through a symlinked folder
		"/boot/files/../secret",                   // cleaned by the mux: a redirect, never the file
		"/boot/files/linux/../../secret",          // likewise
		"/boot/files/%2e%2e/secret",               // dots escaped
		"/boot/files/linux%2F..%2F..%2Fsecret",    // slashes escaped
		"/boot/files/..%5csecret",                 // backslash
		"/boot/files/linux/vmlinuz%00",            // NUL
		"/boot/files/linux",                       // a folder
		"/boot/files/",                            // the root
		"/boot/files/missing",                     // nothing
		"/boot/files/" + strings.Repeat("x/", 50), // empty element
	} {
		code, resp := e.raw(target)
		if code == 200 || code == 206 || strings.Contains(resp, "TOP SECRET") {
			t.Errorf("GET %s: %d, want a refusal:\n%s", target, code, resp)
		}
	}
	for _, ev := range e.svc.Recent() {
		if ev.Type == host.EventFileServed {
			t.Errorf("refused request recorded as served: %+v", ev)
		}
	}
	// Without boot.files nothing is served.
	h := httpserver.BootHandler(httpserver.BootOptions{Scripts: e.svc})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boot/files/linux/vmlinuz", nil))
	if rec.Code != 404 {
		t.Errorf("no files folder: %d", rec.Code)
	}
}

func TestBootDone(t *testing.T) {
	e := newBootEnv(t)
	e.lease("52:54:00:aa:00:02", "127.0.0.1")
	tokRe := regexp.MustCompile(`dls\.token=(\S+)`)
	bootTo := func(handoff bool) string {
		t.Helper()
		_, script := e.do("GET", "/boot/52-54-00-aa-00-02.ipxe?platform=pcbios", nil, "")
		m := tokRe.FindStringSubmatch(script)
		if m == nil {
			t.Fatalf("no token in\n%s", script)
		}
		if handoff {
			_ = e.svc.Report(context.Background(), []host.Event{
				{Type: host.EventISCSILogin, Client: "pc-02", Time: e.clk.Now()},
				{Type: host.EventISCSIHandoff, Client: "pc-02", Time: e.clk.Now()},
			})
		}
		return m[1]
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	jsonCT := map[string]string{"Content-Type": "application/json"}

	// busybox wget --post-data "token=..." after the OS came up.
	tok := bootTo(true)
	e.clk.Advance(20 * time.Second)
	resp, body := e.do("POST", "/boot/done", form, "token="+tok)
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("form confirmation: %s %q", resp.Status, body)
	}
	if s := e.session("pc-02"); s.State != store.SessionDone || !s.TokenUsed || s.Stages["booted"].IsZero() {
		t.Errorf("session after confirmation: %+v", s)
	}
	resp, _ = e.do("POST", "/boot/done", form, "token="+tok)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("reused token: %s, want 409", resp.Status)
	}

	// JSON, by content type, and as curl -d sends it (form content type).
	e.clk.Advance(time.Minute)
	tok = bootTo(true)
	if resp, body := e.do("POST", "/boot/done", jsonCT, `{"token": "`+tok+`"}`); resp.StatusCode != 200 {
		t.Errorf("JSON confirmation: %s %q", resp.Status, body)
	}
	e.clk.Advance(time.Minute)
	tok = bootTo(true)
	if resp, body := e.do("POST", "/boot/done", form, `{"token":"`+tok+`"}`); resp.StatusCode != 200 {
		t.Errorf("JSON with a form content type: %s %q", resp.Status, body)
	}

	// Expired: the OS took longer than the stage timeout.
	e.clk.Advance(time.Minute)
	tok = bootTo(true)
	e.clk.Advance(61 * time.Second)
	if resp, _ := e.do("POST", "/boot/done", form, "token="+tok); resp.StatusCode != http.StatusGone {
		t.Errorf("expired token: %s, want 410", resp.Status)
	}

	for _, tc := range []struct {
		name   string
		header map[string]string
		body   string
		code   int
	}{
		{"wrong", form, "token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", http.StatusForbidden},
		{"wrong JSON", jsonCT, `{"token":"nope"}`, http.StatusForbidden},
		{"empty body", form, "", http.StatusBadRequest},
		{"no token field", form, "tok=abc", http.StatusBadRequest},
		{"empty token", form, "token=", http.StatusBadRequest},
		{"bad JSON", jsonCT, `{"token":`, http.StatusBadRequest},
		{"token not a string", jsonCT, `{"token":42}`, http.StatusBadRequest},
		{"too large", form, "token=" + strings.Repeat("A", httpserver.MaxDoneBody), http.StatusRequestEntityTooLarge},
	} {
		resp, body := e.do("POST", "/boot/done", tc.header, tc.body)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: %s %q, want %d", tc.name, resp.Status, body, tc.code)
		}
	}
	if resp, _ := e.do("PUT", "/boot/done", form, "token=x"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT /boot/done: %s", resp.Status)
	}

	want := map[string]float64{"ok": 3, "reused": 1, "expired": 1, "unknown": 2, "missing": 6, "error": 0}
	for r, n := range want {
		if got := e.confirmations(r); got != n {
			t.Errorf("dls_boot_confirmations_total{result=%q} = %v, want %v", r, got, n)
		}
	}
}

// TestBootDoneBusybox posts the token as a diskless Linux's init script
// would, with busybox wget (package busybox; skipped without it).
func TestBootDoneBusybox(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	e := newBootEnv(t)
	e.lease("52:54:00:aa:00:02", "127.0.0.1")
	_, script := e.do("GET", "/boot/52-54-00-aa-00-02.ipxe", nil, "")
	m := regexp.MustCompile(`dls\.url=(\S+) dls\.token=(\S+)`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no dls.url/dls.token in\n%s", script)
	}
	_ = e.svc.Report(context.Background(), []host.Event{{Type: host.EventISCSIHandoff, Client: "pc-02"}})
	out, err := exec.Command(bb, "wget", "-q", "-O", "-", "--post-data", "token="+m[2], m[1]+"/boot/done").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("busybox wget: %v %q", err, out)
	}
	out, err = exec.Command(bb, "wget", "-q", "-O", "-", "--post-data", "token="+m[2], m[1]+"/boot/done").CombinedOutput()
	if err == nil {
		t.Errorf("busybox wget with a used token succeeded: %q", out)
	}
	if s := e.session("pc-02"); s.State != store.SessionDone || !s.TokenUsed {
		t.Errorf("session %+v", s)
	}
}

func TestBootMetricsLint(t *testing.T) {
	e := newBootEnv(t)
	e.lease("52:54:00:aa:00:01", "127.0.0.1")
	e.doFrom("127.0.0.2", "GET", "/boot/52-54-00-aa-00-01.ipxe", nil, "")
	e.do("GET", "/boot/52-54-00-aa-00-01.ipxe", nil, "")
	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	_, body := e.do("GET", "/metrics", nil, "")
	for _, name := range []string{"dls_boot_sessions_total 1", "dls_active_clients 1", `dls_boot_confirmations_total{result="ok"} 0`,
		"# HELP dls_boot_refused_total ", `dls_boot_refused_total{reason="not_bound"} 1`, `dls_boot_refused_total{reason="done_not_bound"} 0`} {
		if !bytes.Contains([]byte(body), []byte(name)) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}
