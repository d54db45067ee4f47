//go:build linux

// Command demo is `make demo`: one diskless QEMU machine boots from DLS in
// a network namespace while its serial console streams here; then its
// boot session (through the dls CLI, as an admin) and a few of the host's
// metrics are printed, and everything is cleaned up. Root only (network
// namespaces, taps); e2e/run.sh installs the packages it needs.
//
//	sudo make demo            # or: go run ./e2e/demo [-boots 2] [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dls-project/dls/e2e/lab"
)

const (
	serverIP = "192.168.77.1"
	mac      = "52:54:00:de:00:01"
	password = "demo admin passphrase"
)

func main() {
	boots := flag.Int("boots", 2, "how many times the machine boots (the second sees what the first wrote)")
	keep := flag.Bool("keep", false, "keep the demo's folder (config, state, logs)")
	flag.Parse()
	if err := run(*boots, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run(boots int, keep bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, taps): sudo make demo")
	}
	if err := lab.Need("ip", "qemu-system-x86_64", "nasm"); err != nil {
		return fmt.Errorf("%w: make demo installs qemu-system-x86 ipxe-qemu nasm", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	base := "" // $TMPDIR: run.sh removes it at exit
	if keep {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "dls-demo-")
	if err != nil {
		return err
	}
	if keep {
		defer fmt.Printf("\nThe demo's files (config, state, logs) stay in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	prefix := os.Getenv("DLS_E2E_PREFIX")
	if prefix == "" {
		prefix = fmt.Sprintf("dlsdemo%d", os.Getpid()%100000)
	}
	l := lab.New(prefix, dir, nil)
	defer func() {
		step("Cleaning up: stopping DLS, deleting namespace %s-dls", prefix)
		l.Close()
	}()

	root, err := lab.RepoRoot()
	if err != nil {
		return err
	}
	step("Building bin/dls, its plugins, and a disk image (a boot sector, e2e/testdata/boot.asm)")
	bin := filepath.Join(dir, "bin")
	if err := lab.Build(root, bin); err != nil {
		return err
	}
	image := filepath.Join(dir, "disk.img")
	if err := lab.Image(root, image); err != nil {
		return err
	}

	step("Network namespace %s-dls: bridge br0 (%s/24), one tap for the machine", prefix, serverIP)
	ns, err := l.NS("dls")
	if err != nil {
		return err
	}
	if err := ns.Bridge("br0", serverIP+"/24"); err != nil {
		return err
	}
	vm, err := l.Machine(ns, "br0", "t-demo", "demo", mac)
	if err != nil {
		return err
	}
	// The segment's IPv6 router: without one, iPXE waits ~16 s for it
	// (see lab.Router).
	if _, err := l.Router(ns, "br0"); err != nil {
		return err
	}

	step("Starting DLS: dls serve (DHCP full mode on br0, TFTP, HTTP, iSCSI, dir storage)")
	host, err := l.StartHost(ns, bin, lab.HostConfig{
		BootIP:  serverIP,
		Image:   image,
		Clients: []lab.HostClient{{Name: "demo", MAC: mac}},
		DHCP: []lab.HostDHCP{{Name: "lan", Interface: "br0", Mode: "full", ServerIP: serverIP,
			PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: serverIP}},
	}, password)
	if err != nil {
		return err
	}
	cfg, _ := os.ReadFile(host.Config)
	fmt.Printf("config %s:\n%s", host.Config, indent(string(cfg), "  │ "))

	for i := 1; i <= boots; i++ {
		step("Powering on machine demo (%s, no disk, iPXE in its NIC ROM), boot %d of %d: its serial console", mac, i, boots)
		b, err := vm.Boot(ctx, lab.BootOptions{Console: prefixWriter{"  │ "}})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("boot %d: %w\nhost log:\n%s", i, err, host.Proc.LogTail(20))
		}
		seen := "nothing: a fresh clone of the image"
		if b.Seen > 0 {
			seen = fmt.Sprintf("the marker %08x its earlier boot wrote", b.Prev)
		}
		fmt.Printf("\nQEMU exited with status %d after %.1fs: the boot sector ran from its own volume, found %s, and wrote %08x.\n",
			b.Status, b.Wall.Seconds(), seen, b.Nonce)
	}

	step("Its boot sessions: dls login, then dls session list --client demo")
	cli := func(stdin string, args ...string) (string, error) {
		cmd := ns.Command(append([]string{filepath.Join(bin, "dls")}, args...)...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "DLS_SERVER=http://"+lab.HTTPAddr)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli(password+"\n", "login", "--user", "admin", "--password-stdin"); err != nil {
		return fmt.Errorf("dls login: %v: %s", err, out)
	}
	out, err := cli("", "session", "list", "--client", "demo")
	if err != nil {
		return fmt.Errorf("dls session list: %v: %s", err, out)
	}
	fmt.Print(indent(out, "  "))
	token, err := host.Login(ctx, "admin", password)
	if err != nil {
		return err
	}
	ss, err := host.Sessions(ctx, token, "demo")
	if err != nil {
		return err
	}
	for _, s := range ss {
		fmt.Printf("  session %d: %s, %.3fs from the first DHCPDISCOVER to %s: %s\n", s.ID, s.State, s.Seconds(), s.Expect, s.StageList(" → "))
	}

	step("A few of the host's metrics (GET /metrics: the host's and every plugin's, with plugin labels)")
	text, err := host.Scrape(ctx)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(text, "\n") {
		for _, p := range []string{"dls_boot_sessions_total", "dls_boot_time_seconds_sum", "dls_boot_time_seconds_count",
			`dls_dhcp_requests_total{plugin="lan",type="discover"}`, `dls_dhcp_requests_total{plugin="lan",type="request"}`,
			"dls_iscsi_connections_total", "dls_iscsi_read_bytes_total", "dls_iscsi_written_bytes_total", "dls_plugin_up"} {
			if strings.HasPrefix(line, p) {
				fmt.Println("  " + line)
			}
		}
	}
	if !keep {
		fmt.Println("\nmake demo ARGS=-keep keeps the demo's folder: the config, DLS's state and log, the serial logs.")
	}
	return nil
}

func indent(s, p string) string {
	s = strings.TrimRight(s, "\n")
	return p + strings.ReplaceAll(s, "\n", "\n"+p) + "\n"
}

// prefixWriter prints each console line with a prefix.
type prefixWriter struct{ p string }

func (w prefixWriter) Write(b []byte) (int, error) {
	fmt.Print(indent(string(b), w.p))
	return len(b), nil
}
