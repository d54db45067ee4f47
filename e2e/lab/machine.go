//go:build linux

package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Machine is a diskless QEMU machine: no disk, one NIC (virtio-net, whose
// option ROM is iPXE) on a tap of a bridge.
type Machine struct {
	Name string // the client name, for logs
	MAC  string
	NS   *NS
	Tap  string
	lab  *Lab
	mu   sync.Mutex
	n    int // boots so far
}

// Machine creates tap on bridge in ns for a machine with mac.
func (l *Lab) Machine(ns *NS, bridge, tap, name, mac string) (*Machine, error) {
	if err := ns.Tap(tap, bridge); err != nil {
		return nil, err
	}
	return &Machine{Name: name, MAC: mac, NS: ns, Tap: tap, lab: l}, nil
}

// Exit statuses of the boot sector (e2e/testdata/boot.asm): QEMU exits
// with (value<<1)|1 through isa-debug-exit.
const (
	StatusOK          = 0x21<<1 | 1 // 67: marker read, written, read back
	StatusReadFailed  = 0x22<<1 | 1 // 69
	StatusBadPayload  = 0x23<<1 | 1 // 71
	StatusWriteFailed = 0x24<<1 | 1 // 73
	StatusNone        = -1          // QEMU was killed (timeout, iPXE gave up) or did not start
)

// Line is one line of the serial console, with its time since QEMU
// started.
type Line struct {
	At   time.Duration
	Text string
}

// Boot is one power-on of a machine, to QEMU's exit.
type Boot struct {
	Machine string
	N       int // 1 for the machine's first boot
	Start   time.Time
	Wall    time.Duration // QEMU start to exit
	Status  int           // QEMU's exit status (StatusOK), -1 if killed
	Lines   []Line
	Log     string // the serial log file

	// From the boot sector's lines.
	Ran      bool   // DLS-E2E stage2 printed: the disk's code runs
	Payload  bool   // DLS-PAYLOAD-OK: a sector 1 MiB in was read
	Seen     uint32 // boots the marker counted before this one
	Prev     uint32 // the nonce the previous boot wrote (0: none)
	Wrote    bool   // DLS-WROTE: this boot's marker is on the disk
	Nonce    uint32 // this boot's nonce
	ReadyAt  time.Duration
	ScriptBy string // "http" or "tftp": how iPXE fetched the script it booted
	// StoppedOn is the console line BootOptions.StopOn stopped the boot at.
	StoppedOn string
}

// BootOptions tune one boot.
type BootOptions struct {
	// Timeout bounds the boot (default 3 minutes).
	Timeout time.Duration
	// OnReady runs when the boot sector waits at DLS-READY, before the
	// byte that lets it go on is sent (a fault test kills a plugin here).
	OnReady func()
	// Console receives the serial console as it comes (the demo).
	Console io.Writer

	// A Linux machine's boot (e2e/testdata/linux-init.sh) differs from
	// the boot sector's: Ready is the console text at which OnReady runs
	// and Go is sent (default "DLS-READY" and "g"); PowerOff: the boot
	// ends well with QEMU's exit status 0 (the OS powered off, -no-reboot)
	// instead of StatusOK.
	Ready    string
	Go       string
	PowerOff bool
	// UEFI boots OVMF (q35, pflash) with iPXE's EFI ROM for virtio-net
	// instead of SeaBIOS (packages ovmf, ipxe-qemu).
	UEFI bool
	// SecureBoot boots OVMF enforcing Secure Boot with Microsoft's keys
	// enrolled (the .ms files, SMM, a secure flash) and a NIC without an
	// option ROM: OVMF's own PXE boots, as a PC with Secure Boot on does.
	SecureBoot bool
	// StopOn ends the boot, as a success, at the first console line
	// holding one of these (a boot that is expected to stop there: QEMU
	// is killed). Boot.StoppedOn is the line.
	StopOn []string
	// HTTPBoot boots OVMF by UEFI HTTP boot, as a machine whose firmware
	// is set to boot by HTTP: the NIC has no option ROM (romfile=, so
	// OVMF's own network stack boots) and OVMF's PXE over IPv4 and IPv6
	// is off (fw_cfg opt/org.tianocore/IPv4PXESupport, IPv6PXESupport),
	// which it would try first. Implies UEFI.
	HTTPBoot bool
	// Memory is the machine's RAM in MiB (default 256).
	Memory int
}

// OVMF firmware files (package ovmf).
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	// Secure Boot enforcing, Microsoft's keys enrolled.
	OVMFCodeMS = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	OVMFVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

var (
	reMark  = regexp.MustCompile(`DLS-MARK seen=([0-9a-f]{8}) prev=([0-9a-f]{8})`)
	reWrote = regexp.MustCompile(`DLS-WROTE seen=([0-9a-f]{8}) nonce=([0-9a-f]{8})`)
	// iPXE prints each fetch as "<uri>... ok".
	reFetch = regexp.MustCompile(`(https?|tftp)://\S+\.ipxe\.\.\. ok`)
)

// ansi matches the terminal control sequences SeaBIOS and iPXE print
// (colours, clear screen, reset).
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)

// CleanConsole is a console line without terminal control sequences,
// carriage returns and trailing blanks.
func CleanConsole(line string) string {
	line = ansi.ReplaceAllString(line, "")
	line = strings.ReplaceAll(line, "\r", "")
	return strings.TrimRight(line, " ")
}

func hex32(s string) uint32 {
	v, _ := strconv.ParseUint(s, 16, 32)
	return uint32(v)
}

// Boot powers the machine on and returns when QEMU exits (the boot sector
// leaves through isa-debug-exit) or opts.Timeout passes, or iPXE gives up
// ("No bootable device"). An error means the boot did not end with
// StatusOK; the Boot is returned either way.
func (m *Machine) Boot(ctx context.Context, opts BootOptions) (*Boot, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 3 * time.Minute
	}
	if opts.Ready == "" {
		opts.Ready, opts.Go = "DLS-READY", "g"
	}
	want := StatusOK
	if opts.PowerOff {
		want = 0
	}
	if opts.Memory == 0 {
		opts.Memory = 256
	}
	m.mu.Lock()
	m.n++
	b := &Boot{Machine: m.Name, N: m.n, Status: StatusNone}
	m.mu.Unlock()
	b.Log = filepath.Join(m.lab.Dir, fmt.Sprintf("serial-%s-%d.log", m.Name, b.N))
	logFile, err := os.Create(b.Log)
	if err != nil {
		return b, err
	}
	defer logFile.Close()

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	qemu := []string{"qemu-system-x86_64", "-accel", "tcg", "-m", strconv.Itoa(opts.Memory), "-nographic", "-no-reboot",
		"-boot", "n", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-netdev", "tap,id=n0,ifname=" + m.Tap + ",script=no,downscript=no"}
	nic := "virtio-net-pci,netdev=n0,mac=" + m.MAC
	switch {
	case opts.SecureBoot:
		vars := filepath.Join(m.lab.Dir, "ovmf-ms-vars-"+m.Tap+".fd")
		if _, err := os.Stat(vars); err != nil {
			if err := CopySparse(OVMFVarsMS, vars); err != nil {
				return b, err
			}
		}
		qemu = append(qemu, "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
			"-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCodeMS,
			"-drive", "if=pflash,format=raw,file="+vars)
		nic += ",romfile="
	case opts.UEFI || opts.HTTPBoot:
		// The machine's own copy of the UEFI variables, kept across its
		// boots as a real machine's NVRAM is.
		vars := filepath.Join(m.lab.Dir, "ovmf-vars-"+m.Tap+".fd")
		if _, err := os.Stat(vars); err != nil {
			if err := CopySparse(OVMFVars, vars); err != nil {
				return b, err
			}
		}
		qemu = append(qemu, "-machine", "q35",
			"-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,file="+vars)
		if opts.HTTPBoot {
			nic += ",romfile="
			qemu = append(qemu, "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
				"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no")
		} else {
			nic += ",romfile=/usr/lib/ipxe/qemu/efi-virtio.rom"
		}
	}
	args := m.NS.Exec(append(qemu, "-device", nic)...)
	cmd := exec.Command(args[0], args[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return b, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return b, err
	}
	cmd.Stderr = cmd.Stdout
	b.Start = time.Now()
	if err := spawn(cmd); err != nil {
		return b, err
	}
	waited := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
		case <-waited:
		}
	}()

	var lastFetch string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	gaveUp := false
	for sc.Scan() {
		text := CleanConsole(sc.Text())
		at := time.Since(b.Start)
		b.Lines = append(b.Lines, Line{At: at, Text: text})
		fmt.Fprintf(logFile, "%7.3f %s\n", at.Seconds(), text)
		if opts.Console != nil {
			fmt.Fprintln(opts.Console, text)
		}
		if f := reFetch.FindStringSubmatch(text); f != nil {
			lastFetch = f[1]
		}
		switch {
		case strings.Contains(text, "DLS-E2E stage2"):
			b.Ran = true
			b.ScriptBy = lastFetch
		case strings.Contains(text, "DLS-PAYLOAD-OK"):
			b.Payload = true
		case reMark.MatchString(text):
			s := reMark.FindStringSubmatch(text)
			b.Seen, b.Prev = hex32(s[1]), hex32(s[2])
		case strings.Contains(text, opts.Ready):
			b.ReadyAt = at
			if opts.OnReady != nil {
				opts.OnReady()
			}
			_, _ = io.WriteString(stdin, opts.Go)
		case reWrote.MatchString(text):
			s := reWrote.FindStringSubmatch(text)
			b.Wrote, b.Nonce = true, hex32(s[2])
		case b.StoppedOn == "" && slices.ContainsFunc(opts.StopOn, func(s string) bool { return strings.Contains(text, s) }):
			b.StoppedOn = text
			_ = cmd.Process.Kill()
		case strings.Contains(text, "No bootable device"):
			// iPXE and the BIOS gave up: nothing more will happen.
			gaveUp = true
			_ = cmd.Process.Kill()
		}
	}
	err = cmd.Wait()
	close(waited)
	b.Wall = time.Since(b.Start)
	var ee *exec.ExitError
	switch {
	case err == nil:
		b.Status = 0
	case errors.As(err, &ee) && ee.Exited():
		b.Status = ee.ExitCode()
	}
	if b.Status == want || b.StoppedOn != "" {
		return b, nil
	}
	why := fmt.Sprintf("QEMU exit status %d", b.Status)
	switch {
	case gaveUp:
		why = "no bootable device (iPXE gave up)"
	case ctx.Err() != nil:
		why = fmt.Sprintf("no exit within %s", opts.Timeout)
	}
	return b, fmt.Errorf("%s boot %d: %s; serial console:\n%s", m.Name, b.N, why, b.Tail(25))
}

// Tail is the last n lines of the serial console.
func (b *Boot) Tail(n int) string {
	lines := b.Lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var sb strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&sb, "  %7.3f %s\n", l.At.Seconds(), l.Text)
	}
	return sb.String()
}

// Has reports whether a console line contains s.
func (b *Boot) Has(s string) bool {
	for _, l := range b.Lines {
		if strings.Contains(l.Text, s) {
			return true
		}
	}
	return false
}
