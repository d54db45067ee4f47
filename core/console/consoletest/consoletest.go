// Package consoletest drives the floor console in a real browser for
// tests: Debian's chromium, headless, through chromedp. A test that
// imports it skips when chromium is not installed.
package consoletest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium finds the browser, or skips the test (and in -short).
func Chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("a real browser: not in -short")
	}
	p, err := FindChromium()
	if err != nil {
		t.Skip(err)
	}
	return p
}

// FindChromium is the browser's path, or an error saying how to get it
// (for tools that run it outside a test: bench/storm -console).
func FindChromium() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is not installed (apt-get install chromium)")
}

// Artifacts is where screenshots go, made if missing:
// $DLS_E2E_ARTIFACTS/sub, or def/sub (the caller's path to the repository's
// e2e/artifacts, which git ignores): kept after the test, unlike
// t.TempDir.
func Artifacts(t *testing.T, def, sub string) string {
	t.Helper()
	dir := os.Getenv("DLS_E2E_ARTIFACTS")
	if dir == "" {
		dir = def
	}
	dir, err := filepath.Abs(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Start starts a headless chromium of width × height and answers its
// tab's context; wrap, when not nil, may change the browser's command (run
// it in a network namespace). The browser ends with the test.
func Start(t *testing.T, width, height int, wrap func(*exec.Cmd)) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(t)),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("enable-precise-memory-info", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	if wrap != nil {
		opts = append(opts, chromedp.ModifyCmdFunc(wrap))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// Do runs browser actions with a deadline, naming the step on failure.
func Do(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		failPage(t, ctx, step, err)
	}
}

// Value runs one browser action that answers a value.
func Value[T any](t *testing.T, ctx context.Context, step string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		failPage(t, ctx, step, err)
	}
	return v
}

func failPage(t *testing.T, ctx context.Context, step string, err error) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	page, _ := chromedp.Run(pctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 2000)`))
	t.Fatalf("%s: %v\npage: %s", step, err, page)
}

// Eval evaluates js, awaiting the promise it may answer.
func Eval[T any](js string) chromedp.Action[T] {
	return chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise)
}

// WaitJS polls js until it answers true.
func WaitJS(js string) chromedp.Action[chromedp.Void] { return PollJS(js, 20*time.Millisecond) }

// PollJS polls js every interval until it answers true; a measurement
// that times the wait polls more often.
func PollJS(js string, every time.Duration) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		for {
			ok, err := chromedp.Evaluate[bool](js)(ctx, tg)
			if err != nil || ok {
				return chromedp.Void{}, err
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("waiting for %s: %w", js, ctx.Err())
			case <-time.After(every):
			}
		}
	}
}

// CSS is a CSS selector.
type CSS = chromedp.CSS

// SignIn signs the console at url in as user, through its form, and
// waits for the floor's first tile. The page is loaded afresh (a query
// of its own), so the form is shown only once the page found nobody
// signed in: a hash change from a page that already shows the form (after
// SignOut) shows it again after a request, and that reset what the test
// had typed by then ("invalid username or password" in e2e).
func SignIn(t *testing.T, ctx context.Context, url, user, password string) {
	t.Helper()
	Do(t, ctx, "sign in as "+user,
		chromedp.Navigate(fmt.Sprintf("%s/?signin=%d#/floor", url, time.Now().UnixNano())),
		chromedp.WaitVisible(CSS(`#signin input[name="username"]`)),
		chromedp.SendKeys(CSS(`#signin input[name="username"]`), user),
		chromedp.SendKeys(CSS(`#signin input[name="password"]`), password),
		chromedp.Click(CSS(`#signin button[type="submit"]`)),
		chromedp.WaitVisible(CSS(`.tile`)),
	)
}

// SignOut presses Sign out and waits for the sign-in form.
func SignOut(t *testing.T, ctx context.Context) {
	t.Helper()
	Do(t, ctx, "sign out",
		chromedp.Click(CSS(`#signout`)),
		chromedp.WaitVisible(CSS(`#signin input[name="username"]`)))
}

// Screenshot saves a full-page PNG as dir/name and prints its path.
func Screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := Value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	fmt.Fprintf(os.Stderr, "console screenshot: %s\n", path)
}
