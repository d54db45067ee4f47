//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/internal/iscsi/initiator"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Stages of one machine's boot, in order; "boot" is the whole chain.
const (
	stageDHCP = "dhcp"
	// stageACK is REQUEST → ACK alone: the lease commit's share of dhcp
	// (DLS stores the lease, fsynced, before it ACKs).
	stageACK    = "dhcp_ack"
	stageTFTP   = "tftp"
	stageScript = "script"
	stageLogin  = "iscsi_login"
	stageRead   = "read"
	stageWrite  = "write"
	stageBoot   = "boot"
)

var stages = []string{stageDHCP, stageACK, stageTFTP, stageScript, stageLogin, stageRead, stageWrite, stageBoot}

// writeSize is the machine's write: one 4 KiB block, unique per machine
// and attempt, synced (SYNCHRONIZE CACHE) before it counts as acknowledged.
const writeSize = 4096

// stack is what the machines boot from: DLS or the reference, as seen
// from the wire, plus what the tool cannot learn from it.
type stack struct {
	Name     string
	HTTPPort int
	// WriteLUNDelta is added to the LUN the boot script names to get the
	// LUN the machine writes to; WriteOffset is where on it (bytes). DLS
	// writes into the client's own copy-on-write volume (delta 0); the
	// reference's disk LUN is the shared image, read-only, and its
	// per-machine write area is the next LUN.
	WriteLUNDelta uint64
	WriteOffset   int64
}

// machine is one simulated diskless machine.
type machine struct {
	Name string
	MAC  net.HardwareAddr
}

// ack is a DHCPACK a machine received.
type ack struct {
	MAC  string
	Addr string
}

// outcome is what one machine did in one storm.
type outcome struct {
	Machine string
	MAC     string
	Done    bool
	Err     string
	// Stage latencies of the attempt that got through each stage,
	// retries within the stage included.
	Stages  map[string]time.Duration
	Started time.Time
	Ended   time.Time

	Reboots, DHCPRetransmits, TFTPRetransmits, HTTPRetries, Relogins int
	Acks                                                             []ack
	// Retried are the errors that made the machine retry a stage or
	// reboot, shortened to what tells them apart.
	Retried []string

	// Addr is the address the machine was leased and uses (its TFTP,
	// HTTP and iSCSI traffic leave from it); "" once it gave it up.
	Addr string
	// The acknowledged write, to read back later, from Addr, with the
	// script's CHAP credentials (never written to -results).
	Portal, TargetIQN, InitiatorIQN string
	CHAP                            chapCreds `json:"-"`
	WriteLUN, WriteLBA              uint64
	BlockSize                       int
	WriteNonce                      uint64
	Acked                           bool

	// ACKWait is when the REQUEST that got the ACK of the last attempt
	// was first sent, and when its ACK came; DiskIO when the machine's
	// iSCSI work ran (first login try to its acknowledged write, or to
	// the end of the attempt that failed in it). Together they tell which
	// ACKs waited while other machines wrote to their disks.
	ACKWait, DiskIO span
}

// span is a stretch of time; zero when it did not happen.
type span struct{ From, To time.Time }

// overlaps reports whether s and o share an instant; false if either is
// zero.
func (s span) overlaps(o span) bool {
	if s.From.IsZero() || o.From.IsZero() {
		return false
	}
	return s.From.Before(o.To) && o.From.Before(s.To)
}

// chain is everything a machine needs to boot.
type chain struct {
	relay    *relay
	addrs    *addrs // the leased addresses on the machines' interface
	stack    stack
	bootFile []byte // the first-stage file's content, to check the fetch
	image    []byte // the image's first ReadMiB, to check the read
	readMiB  int
	runID    string
	http     *http.Client
	// Firmware retry schedules.
	dhcpTimeouts []time.Duration
	tftpTimeout  time.Duration
	tftpRetries  int
	stageTries   int
}

// boot runs m's chain until it gets through or ctx ends: a stage that
// fails after its own retries reboots the machine (from DHCP again), as
// firmware does.
func (c *chain) boot(ctx context.Context, m machine) *outcome {
	o := &outcome{Machine: m.Name, MAC: m.MAC.String(), Stages: map[string]time.Duration{}, Started: time.Now()}
	for {
		// A machine that reboots has no address until its next ACK.
		if o.Addr != "" {
			if err := c.addrs.release(net.ParseIP(o.Addr), o.MAC); err != nil {
				o.Retried = append(o.Retried, err.Error())
			}
			o.Addr = ""
		}
		err := c.attempt(ctx, m, o)
		if err == nil {
			o.Done, o.Ended = true, time.Now()
			o.Stages[stageBoot] = o.Ended.Sub(o.Started)
			o.Err = ""
			return o
		}
		o.Err = err.Error()
		if ctx.Err() != nil {
			o.Ended = time.Now()
			return o
		}
		o.Reboots++
		o.Retried = append(o.Retried, "reboot: "+err.Error())
		if !sleep(ctx, 2*time.Second+jitter(time.Second)) {
			o.Ended = time.Now()
			return o
		}
	}
}

func (c *chain) attempt(ctx context.Context, m machine, o *outcome) error {
	// DHCP: DISCOVER → OFFER, REQUEST → ACK.
	t0 := time.Now()
	xid := dhcpv4.TransactionID{}
	binary.BigEndian.PutUint32(xid[:], rand.Uint32())
	d, err := discover(m.MAC, xid, c.relay.giaddr)
	if err != nil {
		return err
	}
	offer, retx, err := c.relay.exchange(ctx, d, c.dhcpTimeouts, dhcpv4.MessageTypeOffer)
	o.DHCPRetransmits += retx
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	req, err := request(offer, c.relay.giaddr)
	if err != nil {
		return err
	}
	requested := time.Now()
	reply, retx, err := c.relay.exchange(ctx, req, c.dhcpTimeouts, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	o.DHCPRetransmits += retx
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	if reply.MessageType() == dhcpv4.MessageTypeNak {
		return fmt.Errorf("dhcp: NAK for %s: %s", offer.YourIPAddr, reply.Message())
	}
	o.ACKWait = span{requested, time.Now()}
	o.Stages[stageACK] = o.ACKWait.To.Sub(requested)
	o.Acks = append(o.Acks, ack{MAC: m.MAC.String(), Addr: reply.YourIPAddr.String()})
	// As a real machine: configure the leased address and use it for
	// everything that follows (the host answers a client's script and
	// disk only to the address its boot is bound to).
	if err := c.addrs.acquire(reply.YourIPAddr, o.MAC); err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	o.Addr = reply.YourIPAddr.String()
	local := reply.YourIPAddr
	next := reply.ServerIPAddr
	if next == nil || next.IsUnspecified() {
		next = reply.ServerIdentifier()
	}
	file := reply.BootFileName
	if file == "" {
		file = reply.BootFileNameOption()
	}
	if file == "" || next == nil {
		return fmt.Errorf("dhcp: the ACK for %s names no boot file or server", m.MAC)
	}
	o.Stages[stageDHCP] = time.Since(t0)

	// TFTP: the first-stage file, retried from the start when a transfer
	// gives up.
	t0 = time.Now()
	for try := 1; ; try++ {
		res, err := fetchTFTP(ctx, local, &net.UDPAddr{IP: next, Port: 69}, file, 1432, c.tftpTimeout, c.tftpRetries)
		o.TFTPRetransmits += res.Retransmits
		if err == nil && (res.Size != len(c.bootFile) || res.SHA256 != sha256.Sum256(c.bootFile)) {
			err = fmt.Errorf("tftp %s: got %d bytes that differ from the %d served", file, res.Size, len(c.bootFile))
		}
		if err == nil {
			break
		}
		if try >= c.stageTries || ctx.Err() != nil {
			return err
		}
		o.Retried = append(o.Retried, err.Error())
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
	o.Stages[stageTFTP] = time.Since(t0)

	// The iPXE script over HTTP, at the URL DLS's DHCP hands iPXE.
	t0 = time.Now()
	url := fmt.Sprintf("http://%s:%d/boot/%s.ipxe", next, c.stack.HTTPPort, strings.ReplaceAll(m.MAC.String(), ":", "-"))
	var sc script
	for try := 1; ; try++ {
		sc, err = c.fetchScript(withLocalAddr(ctx, local), url)
		if err == nil {
			break
		}
		o.HTTPRetries++
		if try >= c.stageTries || ctx.Err() != nil {
			return err
		}
		o.Retried = append(o.Retried, err.Error())
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
	o.Stages[stageScript] = time.Since(t0)

	return c.disk(ctx, sc, o)
}

// disk logs in to the machine's target, reads its first readMiB and
// writes its block; a broken session is logged in again and the work
// goes on where it stopped, as iPXE's and the OS's initiators do.
func (c *chain) disk(ctx context.Context, sc script, o *outcome) error {
	o.Portal, o.TargetIQN, o.InitiatorIQN, o.CHAP = sc.Portal, sc.Target, sc.Initiator, sc.CHAP
	o.WriteLUN = sc.LUN + c.stack.WriteLUNDelta
	const chunk = 256 << 10
	total := c.readMiB << 20
	var (
		read     int
		loginAt  = time.Now()
		writeAt  time.Time
		loggedIn bool
		lastErr  error
	)
	defer func() { o.DiskIO = span{loginAt, time.Now()} }()
	for try := 1; try <= c.stageTries*2; try++ {
		if try > 1 {
			o.Relogins++
			o.Retried = append(o.Retried, lastErr.Error())
			if !sleep(ctx, backoff(500*time.Millisecond, 4*time.Second, try)[try-1]) {
				return fmt.Errorf("%w; last error: %v", ctx.Err(), lastErr)
			}
		}
		s, err := initiator.Dial(ctx, loginConfig(o.Addr, sc.Portal, sc.Initiator, sc.Target, sc.CHAP))
		if err != nil {
			lastErr = fmt.Errorf("iscsi login %s: %w", sc.Target, err)
			continue
		}
		if !loggedIn {
			o.Stages[stageLogin] = time.Since(loginAt)
			loggedIn = true
		}
		lastErr = c.diskWork(ctx, s, sc, o, &read, total, chunk, &writeAt)
		if lastErr == nil {
			_ = s.Logout(ctx)
			return nil
		}
		s.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("%w; last error: %v", ctx.Err(), lastErr)
		}
	}
	return lastErr
}

func (c *chain) diskWork(ctx context.Context, s *initiator.Session, sc script, o *outcome, read *int, total, chunk int, writeAt *time.Time) error {
	opCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := unitReady(opCtx, s, sc.LUN, o.WriteLUN); err != nil {
		return fmt.Errorf("%s: %w", sc.Target, err)
	}
	blocks, bs, err := readCapacity(opCtx, s, sc.LUN)
	if err != nil {
		return fmt.Errorf("read capacity of %s: %w", sc.Target, err)
	}
	if uint64(total) > blocks*uint64(bs) {
		return fmt.Errorf("%s: %d bytes, less than the %d to read", sc.Target, blocks*uint64(bs), total)
	}
	readStart := time.Now()
	buf := make([]byte, chunk)
	for *read < total {
		n := min(chunk, total-*read)
		if err := s.ReadLUN(opCtx, samLUN(sc.LUN), uint64(*read/bs), buf[:n], bs); err != nil {
			return fmt.Errorf("read %s at %d: %w", sc.Target, *read, err)
		}
		if !bytes.Equal(buf[:n], c.image[*read:*read+n]) {
			return fmt.Errorf("read %s at %d: not the image's bytes", sc.Target, *read)
		}
		*read += n
	}
	if _, ok := o.Stages[stageRead]; !ok {
		o.Stages[stageRead] = time.Since(readStart)
		*writeAt = time.Now()
	}
	if o.Acked {
		return nil
	}
	// Every attempt writes a fresh nonce: if an unacknowledged write is
	// retried, only the last, acknowledged one must be found later.
	o.BlockSize = bs
	o.WriteLBA = uint64(c.stack.WriteOffset) / uint64(bs)
	o.WriteNonce = rand.Uint64()
	data := writeBlock(c.runID, o.MAC, o.WriteNonce)
	if err := s.WriteLUN(opCtx, samLUN(o.WriteLUN), o.WriteLBA, data, bs, false); err != nil {
		return fmt.Errorf("write %s: %w", sc.Target, err)
	}
	if err := s.SyncCacheLUN(opCtx, samLUN(o.WriteLUN)); err != nil {
		return fmt.Errorf("synchronize cache %s: %w", sc.Target, err)
	}
	o.Acked = true
	o.Stages[stageWrite] = time.Since(*writeAt)
	return nil
}

// samLUN is LUN n as the 8-byte field of an iSCSI PDU (SAM-5 single
// level: peripheral addressing below 256, flat addressing above).
func samLUN(n uint64) uint64 {
	if n < 256 {
		return n << 48
	}
	return (0x4000 | n&0x3fff) << 48
}

// readCapacity asks READ CAPACITY(16), and READ CAPACITY(10) of targets
// that refuse it (tgt, on a read-only LUN), as Linux's sd does.
func readCapacity(ctx context.Context, s *initiator.Session, lun uint64) (uint64, int, error) {
	blocks, bs, err := s.ReadCapacityLUN(ctx, samLUN(lun))
	var se *initiator.SCSIError
	if err == nil || !errors.As(err, &se) || se.Key != 0x5 {
		return blocks, bs, err
	}
	r, err := s.Command(ctx, samLUN(lun), []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8)
	if err != nil {
		return 0, 0, err
	}
	if err := r.Err(); err != nil {
		return 0, 0, err
	}
	if len(r.Data) < 8 {
		return 0, 0, io.ErrUnexpectedEOF
	}
	return uint64(binary.BigEndian.Uint32(r.Data)) + 1, int(binary.BigEndian.Uint32(r.Data[4:])), nil
}

// unitReady sends TEST UNIT READY to each LUN until it stops answering
// UNIT ATTENTION, as an OS's SCSI layer does after a login: tgt reports
// "power on or reset" to the first command of every new session.
func unitReady(ctx context.Context, s *initiator.Session, luns ...uint64) error {
	for _, lun := range luns {
		var err error
		for try := 0; try < 4; try++ {
			var r *initiator.Response
			if r, err = s.Command(ctx, samLUN(lun), make([]byte, 6), nil, 0); err != nil {
				return fmt.Errorf("test unit ready, LUN %d: %w", lun, err)
			}
			var se *initiator.SCSIError
			if err = r.Err(); err == nil || !errors.As(err, &se) || se.Key != 0x6 {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("test unit ready, LUN %d: %w", lun, err)
		}
	}
	return nil
}

// writeBlock is a machine's write: a readable header, then bytes drawn
// from the nonce, so a torn or foreign block never passes for it.
func writeBlock(runID, mac string, nonce uint64) []byte {
	b := make([]byte, writeSize)
	n := copy(b, fmt.Sprintf("dls-storm run=%s mac=%s nonce=%016x\n", runID, mac, nonce))
	r := rand.New(rand.NewPCG(nonce, 0x5eed))
	var w [8]byte
	for i := n; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

// script is what the tool needs from an iPXE sanboot script.
type script struct {
	Initiator string
	Portal    string // host:port
	LUN       uint64
	Target    string
	CHAP      chapCreds
}

// chapCreds are a script's CHAP settings, as iPXE hands them to its
// initiator: username / password answer the target's challenge,
// reverse-username / reverse-password check the target's answer
// (mutual). No password: the machine logs in without CHAP (the
// reference's tgt, or a host without CHAP).
type chapCreds struct {
	User, Secret               string
	ReverseUser, ReverseSecret string
}

// loginConfig is a machine's login: from its leased address local, with
// CHAP when its script has a password.
func loginConfig(local, portal, initiatorIQN, target string, chap chapCreds) initiator.Config {
	cfg := initiator.Config{Addr: portal, LocalAddr: local, InitiatorName: initiatorIQN, TargetName: target, Timeout: 15 * time.Second}
	if chap.Secret != "" {
		cfg.CHAPUser, cfg.CHAPSecret = chap.User, chap.Secret
		if cfg.CHAPUser == "" {
			// iPXE's default CHAP name is the initiator IQN.
			cfg.CHAPUser = initiatorIQN
		}
		if chap.ReverseSecret != "" {
			cfg.MutualUser, cfg.MutualSecret = chap.ReverseUser, chap.ReverseSecret
		}
	}
	return cfg
}

type localAddrKey struct{}

// withLocalAddr makes the chain's HTTP client dial from ip.
func withLocalAddr(ctx context.Context, ip net.IP) context.Context {
	return context.WithValue(ctx, localAddrKey{}, ip)
}

// dialFromLocal is the HTTP transport's dialer: from the address
// withLocalAddr put in ctx, as a machine's iPXE does from its lease.
func dialFromLocal(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 15 * time.Second}
	if ip, ok := ctx.Value(localAddrKey{}).(net.IP); ok && ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d.DialContext(ctx, network, addr)
}

func (c *chain) fetchScript(ctx context.Context, url string) (script, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, "GET", url, nil)
	if err != nil {
		return script{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return script{}, fmt.Errorf("script: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return script{}, fmt.Errorf("script %s: %w", url, err)
	}
	if resp.StatusCode != 200 {
		return script{}, fmt.Errorf("script %s: HTTP %d", url, resp.StatusCode)
	}
	return parseScript(body)
}

// parseScript reads `set initiator-iqn`, the CHAP settings (`set
// username|password|reverse-username|reverse-password`) and `sanboot|sanhook
// iscsi:<server>:<proto>:<port>:<lun>:<target>` (RFC 4173 root path, as
// iPXE reads it) from an iPXE script.
func parseScript(text []byte) (script, error) {
	var sc script
	sn := bufio.NewScanner(bytes.NewReader(text))
	for sn.Scan() {
		f := strings.Fields(sn.Text())
		switch {
		case len(f) >= 3 && f[0] == "set" && f[1] == "initiator-iqn":
			sc.Initiator = f[2]
		// iPXE's set joins its remaining arguments with one space.
		case len(f) >= 3 && f[0] == "set" && f[1] == "username":
			sc.CHAP.User = strings.Join(f[2:], " ")
		case len(f) >= 3 && f[0] == "set" && f[1] == "password":
			sc.CHAP.Secret = strings.Join(f[2:], " ")
		case len(f) >= 3 && f[0] == "set" && f[1] == "reverse-username":
			sc.CHAP.ReverseUser = strings.Join(f[2:], " ")
		case len(f) >= 3 && f[0] == "set" && f[1] == "reverse-password":
			sc.CHAP.ReverseSecret = strings.Join(f[2:], " ")
		case len(f) >= 2 && (f[0] == "sanboot" || f[0] == "sanhook") && strings.HasPrefix(f[len(f)-1], "iscsi:"):
			parts := strings.SplitN(strings.TrimPrefix(f[len(f)-1], "iscsi:"), ":", 5)
			if len(parts) != 5 {
				return sc, fmt.Errorf("script: bad root path %q", f[len(f)-1])
			}
			port := parts[2]
			if port == "" {
				port = "3260"
			}
			sc.Portal = net.JoinHostPort(parts[0], port)
			if parts[3] != "" {
				lun, err := strconv.ParseUint(parts[3], 10, 64)
				if err != nil {
					return sc, fmt.Errorf("script: LUN %q: %w", parts[3], err)
				}
				sc.LUN = lun
			}
			sc.Target = parts[4]
		}
	}
	if sc.Target == "" || sc.Initiator == "" {
		return sc, errors.New("script: no sanboot iscsi: line or no initiator-iqn")
	}
	return sc, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func jitter(d time.Duration) time.Duration { return rand.N(d) }
