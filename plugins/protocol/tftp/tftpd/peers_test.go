package tftpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/plugintest"
)

// Real TFTP clients (Debian packages curl, atftp, tftp-hpa) against the
// plugin. A test skips when its client is missing, unless CI is set:
// then it fails, since .ci/run installs them.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (apt-get install -y curl atftp tftp-hpa)", name)
		}
		t.Skipf("%s not installed (apt-get install -y curl atftp tftp-hpa)", name)
	}
	return path
}

// run runs a client and returns the file it wrote.
func run(t *testing.T, out string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = filepath.Dir(out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRealClients(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprintf("single_port=%v", single), func(t *testing.T) {
			s := startTFTP(t, map[string]any{"single_port": single, "timeout": "1s"})
			// Once bigger than 65535 blocks of 512 bytes, so that block
			// numbers wrap; a multiple of 1468 for a last, empty block.
			size := 1468 * 23000
			if single {
				size = 1468 * 700
			}
			big := s.file(t, "big.bin", size)
			text := []byte("#!ipxe\r\ndhcp\nchain http://10.0.0.1/boot/${mac:hexhyp}.ipxe\n\rend")
			s.write(t, "menu.ipxe", text)
			port := strconv.Itoa(int(s.addr.Port()))
			host := s.addr.Addr().String()
			url := "tftp://" + s.addr.String() + "/"
			check := func(t *testing.T, got, want []byte) {
				t.Helper()
				if !bytes.Equal(got, want) {
					t.Fatalf("got %d bytes, want %d identical", len(got), len(want))
				}
			}

			for _, blksize := range []string{"512", "1468", "65464"} {
				t.Run("curl blksize "+blksize, func(t *testing.T) {
					curl := needTool(t, "curl")
					out := filepath.Join(t.TempDir(), "out")
					check(t, run(t, out, curl, "-sS", "--tftp-blksize", blksize, "-o", out, url+"big.bin"), big)
				})
			}
			t.Run("curl no options", func(t *testing.T) {
				curl := needTool(t, "curl")
				out := filepath.Join(t.TempDir(), "out")
				check(t, run(t, out, curl, "-sS", "--tftp-no-options", "-o", out, url+"menu.ipxe"), text)
			})
			for _, opts := range [][]string{
				{"--option", "blksize 1468"},
				{"--option", "blksize 1468", "--option", "windowsize 16"},
				{"--option", "windowsize 16", "--option", "tsize 0", "--option", "timeout 2"},
			} {
				t.Run(fmt.Sprint("atftp ", opts), func(t *testing.T) {
					atftp := needTool(t, "atftp")
					out := filepath.Join(t.TempDir(), "out")
					args := append(append([]string{}, opts...), "-g", "-r", "big.bin", "-l", out, host, port)
					check(t, run(t, out, atftp, args...), big)
				})
			}
			t.Run("tftp-hpa binary", func(t *testing.T) {
				tftp := needTool(t, "tftp")
				out := filepath.Join(t.TempDir(), "out")
				check(t, run(t, out, tftp, "-m", "binary", host, port, "-c", "get", "big.bin", out), big)
			})
			t.Run("tftp-hpa netascii", func(t *testing.T) {
				tftp := needTool(t, "tftp")
				out := filepath.Join(t.TempDir(), "out")
				// The client turns netascii back into local line ends.
				check(t, run(t, out, tftp, "-m", "ascii", host, port, "-c", "get", "menu.ipxe", out), text)
			})
		})
	}
}

// TestRealClientScriptBinding: curl from the address the host binds to a
// machine's boot (127.0.0.1) gets its script; curl bound to a second
// loopback address (another machine, 127.0.0.2) gets "file not found"
// (curl's exit 68), the answer of an unknown MAC, never an access error.
func TestRealClientScriptBinding(t *testing.T) {
	curl := needTool(t, "curl")
	fh := plugintest.NewFakeHost()
	script := "#!ipxe\nset password secret-of-pc-01\n"
	fh.SetScript("52:54:00:12:34:56", "pc-01", script, "127.0.0.1")
	s := startTFTP(t, map[string]any{"timeout": "1s"}, plugintest.WithHost(fh))
	out := filepath.Join(t.TempDir(), "script")
	for _, name := range []string{"mac/52-54-00-12-34-56.ipxe", "mac/52:54:00:12:34:56.ipxe", "mac/52-54-00-99-99-99.ipxe"} {
		cmd := exec.Command(curl, "-sS", "--interface", "127.0.0.2", "-o", out, "tftp://"+s.addr.String()+"/"+name)
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 68 {
			t.Errorf("curl from 127.0.0.2 for %s: %v %s, want exit 68 (file not found)", name, err, b)
		}
		if got, _ := os.ReadFile(out); bytes.Contains(got, []byte("secret")) {
			t.Errorf("127.0.0.2 got the script of %s", name)
		}
	}
	for _, q := range fh.ScriptQueries() {
		if q.Peer != "127.0.0.2" {
			t.Errorf("script query %+v: want the requester's address 127.0.0.2", q)
		}
	}
	if ev := fh.Events(); len(ev) != 0 {
		t.Errorf("refused requests reported %+v", ev)
	}
	got := run(t, out, curl, "-sS", "--interface", "127.0.0.1", "-o", out, "tftp://"+s.addr.String()+"/mac/52-54-00-12-34-56.ipxe")
	if string(got) != script {
		t.Errorf("curl from the bound address got %q", got)
	}
}
