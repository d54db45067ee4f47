// Package initiator is a small iSCSI initiator (RFC 7143): discovery,
// login with CHAP (one-way or mutual) and digests, and SCSI commands with
// immediate, unsolicited and solicited (R2T) data, many in flight at once
// on one session. DLS's tests use it against its target, and the
// boot-storm tool uses it to play many diskless clients; no plugin or
// host code does, hence internal/.
package initiator

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
)

// Config says where and as whom to log in.
type Config struct {
	// Addr is the portal, host:port.
	Addr string
	// LocalAddr, when set, is the IP address the connection comes from
	// (the address a machine was leased); empty: the system chooses.
	LocalAddr string
	// InitiatorName is the initiator IQN.
	InitiatorName string
	// TargetName is the target IQN; empty for a discovery session.
	TargetName string
	// ISID of the session; zero: a random one (type "random", 0x80...).
	ISID [6]byte
	// CHAPUser and CHAPSecret answer the target's challenge; empty: no
	// CHAP offered.
	CHAPUser   string
	CHAPSecret string
	// MutualUser and MutualSecret, when set, make the initiator challenge
	// the target, which must answer as MutualUser.
	MutualUser   string
	MutualSecret string
	// HeaderDigest and DataDigest ask for CRC32C digests.
	HeaderDigest bool
	DataDigest   bool
	// MaxRecvDataSegmentLength the initiator declares (default 256 KiB).
	MaxRecvDataSegmentLength int
	// InitialR2T and NoImmediateData change the data-out negotiation.
	InitialR2T      bool
	NoImmediateData bool
	// Timeout bounds dialing and login (default 10 s).
	Timeout time.Duration
}

// LoginError is a login the target refused.
type LoginError struct {
	Status uint16 // status class << 8 | detail
}

func (e *LoginError) Error() string {
	return fmt.Sprintf("iscsi login refused: status %#04x", e.Status)
}

// Status class 2 details the target uses.
const (
	LoginAuthFailure  = 0x0201
	LoginAuthzFailure = 0x0202
	LoginNotFound     = 0x0203
)

// SCSIError is a command that ended with a status other than GOOD.
type SCSIError struct {
	Status byte
	Key    byte
	ASC    byte
	ASCQ   byte
	Sense  []byte
}

func (e *SCSIError) Error() string {
	return fmt.Sprintf("scsi status %#02x, sense key %#x asc %#02x ascq %#02x", e.Status, e.Key, e.ASC, e.ASCQ)
}

// ErrClosed is returned for commands on a closed session.
var ErrClosed = errors.New("iscsi session closed")

// Session is a logged-in session with one connection. Its methods are
// safe for concurrent use.
type Session struct {
	cfg  Config
	nc   net.Conn
	rd   pdu.Reader
	wmu  sync.Mutex
	tsih uint16

	// negotiated
	maxSend       int
	firstBurst    int
	maxBurst      int
	immediateData bool
	initialR2T    bool
	hd, dd        bool

	mu      sync.Mutex
	cmdSN   uint32
	maxCmd  uint32
	expStat uint32
	itt     uint32
	tasks   map[uint32]*call
	window  chan struct{} // signalled when MaxCmdSN moves
	err     error
	done    chan struct{}
}

// call is one command waiting for its answer.
type call struct {
	dataIn   []byte
	dataOut  []byte
	got      int
	status   byte
	sense    []byte
	residual uint32
	flags    byte
	resp     *pdu.PDU // for non-SCSI requests
	done     chan struct{}
	lun      uint64
}

// Target is one SendTargets answer.
type Target struct {
	Name      string
	Addresses []string
}

// Dial connects and logs in.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxRecvDataSegmentLength == 0 {
		cfg.MaxRecvDataSegmentLength = 256 << 10
	}
	if cfg.ISID == ([6]byte{}) {
		cfg.ISID[0] = 0x80
		_, _ = rand.Read(cfg.ISID[1:])
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	if cfg.LocalAddr != "" {
		ip, err := netip.ParseAddr(cfg.LocalAddr)
		if err != nil {
			return nil, fmt.Errorf("iscsi: local address %q: %w", cfg.LocalAddr, err)
		}
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
	}
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Session{
		cfg: cfg, nc: nc, tasks: map[uint32]*call{}, done: make(chan struct{}),
		window: make(chan struct{}, 1), maxSend: 8192, firstBurst: 65536, maxBurst: 262144,
		immediateData: true, initialR2T: true,
	}
	s.rd.R = nc
	s.rd.MaxData = cfg.MaxRecvDataSegmentLength
	deadline := time.Now().Add(cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	if err := s.login(); err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	s.rd.HeaderDigest, s.rd.DataDigest = s.hd, s.dd
	go s.readLoop()
	return s, nil
}

// Discover runs a discovery session and returns SendTargets=All.
func Discover(ctx context.Context, cfg Config) ([]Target, error) {
	cfg.TargetName = ""
	s, err := Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	resp, err := s.request(ctx, pdu.OpText, 0, pdu.AppendText(nil, "SendTargets", "All"), nil)
	if err != nil {
		return nil, err
	}
	kvs, err := pdu.ParseText(resp.Data)
	if err != nil {
		return nil, err
	}
	var out []Target
	for _, kv := range kvs {
		switch kv.Key {
		case "TargetName":
			out = append(out, Target{Name: kv.Value})
		case "TargetAddress":
			if len(out) > 0 {
				out[len(out)-1].Addresses = append(out[len(out)-1].Addresses, kv.Value)
			}
		}
	}
	_ = s.Logout(ctx)
	return out, nil
}

func (s *Session) writePDU(p *pdu.PDU) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.nc.Write(p.Encode(nil, s.hd, s.dd))
	return err
}

// login negotiates security (when CHAP is configured) and operational
// parameters, then enters the full feature phase.
func (s *Session) login() error {
	cfg := s.cfg
	var kv []byte
	add := func(k, v string) { kv = pdu.AppendText(kv, k, v) }
	add("InitiatorName", cfg.InitiatorName)
	if cfg.TargetName == "" {
		add("SessionType", "Discovery")
	} else {
		add("SessionType", "Normal")
		add("TargetName", cfg.TargetName)
	}
	if cfg.CHAPSecret != "" {
		add("AuthMethod", "CHAP,None")
	} else {
		add("AuthMethod", "None")
	}
	var chalSent []byte
	var chapID byte
	stage, chapStep := 0, 0
	if cfg.CHAPSecret == "" {
		chapStep = 2
	}
	for range 16 {
		transit, nsg := chapStep == 2, 1
		if stage == 1 {
			transit, nsg = true, 3
			kv = s.operational(kv)
		}
		resp, err := s.loginPDU(stage, nsg, transit, kv)
		if err != nil {
			return err
		}
		kv = nil
		kvs, err := pdu.ParseText(resp.Data)
		if err != nil {
			return err
		}
		s.applyOperational(kvs)
		if stage == 0 {
			switch chapStep {
			case 0:
				if am, _ := pdu.Get(kvs, "AuthMethod"); am == "CHAP" {
					add("CHAP_A", "5")
					chapStep = 1
				} else {
					if cfg.MutualSecret != "" {
						// The target would not prove who it is.
						return fmt.Errorf("iscsi login: mutual CHAP asked, the target chose AuthMethod %q", am)
					}
					chapStep = 2
				}
				continue
			case 1:
				c, _ := pdu.Get(kvs, "CHAP_C")
				id, _ := pdu.Get(kvs, "CHAP_I")
				n, _ := strconv.Atoi(id)
				chal, err := hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(c, "0x"), "0X"))
				if err != nil || len(chal) == 0 {
					return fmt.Errorf("iscsi login: CHAP_C %q", c)
				}
				add("CHAP_N", cfg.CHAPUser)
				add("CHAP_R", "0x"+hex.EncodeToString(chapMD5(byte(n), cfg.CHAPSecret, chal)))
				if cfg.MutualSecret != "" {
					var b [1]byte
					_, _ = rand.Read(b[:])
					chapID = b[0]
					chalSent = make([]byte, 16)
					_, _ = rand.Read(chalSent)
					add("CHAP_I", strconv.Itoa(int(chapID)))
					add("CHAP_C", "0x"+hex.EncodeToString(chalSent))
				}
				chapStep = 2
				continue
			}
			if chalSent != nil {
				n, _ := pdu.Get(kvs, "CHAP_N")
				r, _ := pdu.Get(kvs, "CHAP_R")
				got, _ := hex.DecodeString(strings.TrimPrefix(r, "0x"))
				if n != cfg.MutualUser || !bytes.Equal(got, chapMD5(chapID, cfg.MutualSecret, chalSent)) {
					return errors.New("iscsi login: the target failed mutual CHAP")
				}
				chalSent = nil
			}
		}
		if resp.Flags()&pdu.FlagTransit != 0 {
			stage = int(resp.Flags()) & 3
			if stage == 3 {
				s.tsih = binary.BigEndian.Uint16(resp.Header[14:])
				return nil
			}
		}
	}
	return errors.New("iscsi login: too many login steps")
}

func chapMD5(id byte, secret string, chal []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(chal)
	return h.Sum(nil)
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

func (s *Session) operational(kv []byte) []byte {
	cfg := s.cfg
	add := func(k, v string) { kv = pdu.AppendText(kv, k, v) }
	d := func(on bool) string {
		if on {
			return "CRC32C,None"
		}
		return "None"
	}
	add("HeaderDigest", d(cfg.HeaderDigest))
	add("DataDigest", d(cfg.DataDigest))
	add("MaxRecvDataSegmentLength", strconv.Itoa(cfg.MaxRecvDataSegmentLength))
	if cfg.TargetName != "" {
		add("InitialR2T", yesNo(cfg.InitialR2T))
		add("ImmediateData", yesNo(!cfg.NoImmediateData))
		add("MaxBurstLength", "16776192")
		add("FirstBurstLength", "262144")
		add("MaxOutstandingR2T", "1")
		add("MaxConnections", "1")
		add("DataPDUInOrder", "Yes")
		add("DataSequenceInOrder", "Yes")
		add("ErrorRecoveryLevel", "0")
		add("DefaultTime2Wait", "0")
		add("DefaultTime2Retain", "0")
	}
	return kv
}

func (s *Session) applyOperational(kvs []pdu.KV) {
	for _, kv := range kvs {
		n, _ := strconv.Atoi(kv.Value)
		switch kv.Key {
		case "HeaderDigest":
			s.hd = kv.Value == "CRC32C"
		case "DataDigest":
			s.dd = kv.Value == "CRC32C"
		case "MaxRecvDataSegmentLength":
			s.maxSend = n
		case "FirstBurstLength":
			s.firstBurst = n
		case "MaxBurstLength":
			s.maxBurst = n
		case "ImmediateData":
			s.immediateData = kv.Value == "Yes"
		case "InitialR2T":
			s.initialR2T = kv.Value == "Yes"
		}
	}
}

func (s *Session) loginPDU(csg, nsg int, transit bool, text []byte) (*pdu.PDU, error) {
	p := &pdu.PDU{}
	p.SetOpcode(pdu.OpLogin, true)
	p.Header[1] = byte(csg) << 2
	if transit {
		p.Header[1] |= pdu.FlagTransit | byte(nsg)
	}
	copy(p.Header[8:14], s.cfg.ISID[:])
	binary.BigEndian.PutUint16(p.Header[14:], s.tsih)
	p.SetU32(16, s.itt)
	s.itt++
	p.SetU32(24, s.cmdSN)
	p.SetU32(28, s.expStat)
	p.Data = text
	if err := s.writePDU(p); err != nil {
		return nil, err
	}
	var r pdu.PDU
	if err := s.rd.Read(&r); err != nil {
		return nil, err
	}
	if r.Opcode() != pdu.OpLoginResp {
		return nil, fmt.Errorf("iscsi login: opcode %#x in answer", r.Opcode())
	}
	if st := binary.BigEndian.Uint16(r.Header[36:]); st != 0 {
		return nil, &LoginError{Status: st}
	}
	s.expStat = r.U32(24) + 1
	s.cmdSN = r.U32(28)
	s.maxCmd = r.U32(32)
	s.tsih = binary.BigEndian.Uint16(r.Header[14:])
	return &r, nil
}

func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
	tasks := s.tasks
	s.tasks = map[uint32]*call{}
	s.mu.Unlock()
	for _, c := range tasks {
		close(c.done)
	}
	s.nc.Close()
}

func (s *Session) readLoop() {
	var p pdu.PDU
	for {
		if err := s.rd.ReadHeader(&p); err != nil {
			s.fail(err)
			return
		}
		itt := p.ITT()
		s.mu.Lock()
		c := s.tasks[itt]
		if st := p.U32(24); p.Opcode() != pdu.OpDataIn || p.Flags()&pdu.FlagStatus != 0 {
			if int32(st+1-s.expStat) > 0 {
				s.expStat = st + 1
			}
		}
		if mx := p.U32(32); p.Opcode() != pdu.OpReject && int32(mx-s.maxCmd) > 0 {
			s.maxCmd = mx
			select {
			case s.window <- struct{}{}:
			default:
			}
		}
		s.mu.Unlock()
		switch p.Opcode() {
		case pdu.OpDataIn:
			off := int(p.U32(40))
			n := p.DataLen()
			if c == nil || off+n > len(c.dataIn) {
				if err := s.rd.Skip(&p); err != nil {
					s.fail(err)
					return
				}
				continue
			}
			if err := s.rd.ReadData(&p, c.dataIn[off:off+n]); err != nil {
				s.fail(err)
				return
			}
			c.got = max(c.got, off+n)
			if p.Flags()&pdu.FlagStatus != 0 {
				c.status, c.flags, c.residual = p.Header[3], p.Flags(), p.U32(44)
				s.finish(itt)
			}
			continue
		case pdu.OpR2T:
			if err := s.rd.Skip(&p); err != nil {
				s.fail(err)
				return
			}
			if c != nil {
				go s.sendData(itt, c, int(p.U32(40)), int(p.U32(44)), p.U32(20))
			}
			continue
		}
		data := make([]byte, p.DataLen())
		if err := s.rd.ReadData(&p, data); err != nil {
			s.fail(err)
			return
		}
		switch p.Opcode() {
		case pdu.OpSCSIResponse:
			if c != nil {
				c.status, c.flags, c.residual = p.Header[3], p.Flags(), p.U32(44)
				if len(data) >= 2 {
					n := int(binary.BigEndian.Uint16(data))
					if 2+n <= len(data) {
						c.sense = data[2 : 2+n]
					}
				}
				s.finish(itt)
			}
		case pdu.OpNOPIn:
			if itt == noTag && p.U32(20) != noTag {
				// A ping from the target: answer it.
				o := &pdu.PDU{}
				o.SetOpcode(pdu.OpNOPOut, true)
				o.Header[1] = pdu.FlagFinal
				copy(o.Header[8:16], p.Header[8:16])
				o.SetU32(16, noTag)
				o.SetU32(20, p.U32(20))
				s.mu.Lock()
				o.SetU32(24, s.cmdSN)
				o.SetU32(28, s.expStat)
				s.mu.Unlock()
				go func() { _ = s.writePDU(o) }()
				continue
			}
			fallthrough
		default:
			if c != nil {
				r := p
				r.Data = data
				c.resp = &r
				s.finish(itt)
			} else if p.Opcode() == pdu.OpReject && len(data) >= pdu.BHSLen {
				// The rejected PDU's task ends with the reject.
				ritt := binary.BigEndian.Uint32(data[16:])
				s.mu.Lock()
				rc := s.tasks[ritt]
				s.mu.Unlock()
				if rc != nil {
					r := p
					r.Data = data
					rc.resp = &r
					s.finish(ritt)
				}
			}
		}
	}
}

const noTag = 0xffffffff

func (s *Session) finish(itt uint32) {
	s.mu.Lock()
	c := s.tasks[itt]
	delete(s.tasks, itt)
	s.mu.Unlock()
	if c != nil {
		close(c.done)
	}
}

// sendData answers an R2T from c.dataOut.
func (s *Session) sendData(itt uint32, c *call, off, length int, ttt uint32) {
	s.wmu.Lock()
	err := s.sendDataLocked(itt, c, off, length, ttt)
	s.wmu.Unlock()
	if err != nil {
		s.fail(err)
	}
}

// sendDataLocked writes Data-Out PDUs for [off, off+length); s.wmu is held.
func (s *Session) sendDataLocked(itt uint32, c *call, off, length int, ttt uint32) error {
	var sn uint32
	end := min(off+length, len(c.dataOut))
	for off < end {
		n := min(end-off, s.maxSend)
		p := &pdu.PDU{}
		p.SetOpcode(pdu.OpDataOut, false)
		if off+n == end {
			p.Header[1] = pdu.FlagFinal
		}
		p.SetLUN(c.lun)
		p.SetU32(16, itt)
		p.SetU32(20, ttt)
		s.mu.Lock()
		p.SetU32(28, s.expStat)
		s.mu.Unlock()
		p.SetU32(36, sn)
		p.SetU32(40, uint32(off))
		p.Data = c.dataOut[off : off+n]
		if _, err := s.nc.Write(p.Encode(nil, s.hd, s.dd)); err != nil {
			return err
		}
		sn++
		off += n
	}
	return nil
}

// send allocates an ITT and, unless immediate, the next CmdSN within the
// window, fills them into p (with ExpStatSN) and writes p, all in CmdSN
// order; then it runs after (unsolicited data-out) still in order.
func (s *Session) send(ctx context.Context, immediate bool, c *call, p *pdu.PDU, after func(itt uint32)) (uint32, error) {
	for {
		s.wmu.Lock()
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			s.wmu.Unlock()
			return 0, fmt.Errorf("%w: %v", ErrClosed, err)
		}
		if immediate || int32(s.cmdSN-s.maxCmd) <= 0 {
			s.itt++
			if s.itt == noTag {
				s.itt = 0
			}
			itt := s.itt
			p.SetU32(16, itt)
			p.SetU32(24, s.cmdSN)
			p.SetU32(28, s.expStat)
			if !immediate {
				s.cmdSN++
			}
			s.tasks[itt] = c
			s.mu.Unlock()
			_, err := s.nc.Write(p.Encode(nil, s.hd, s.dd))
			if err == nil && after != nil {
				after(itt)
			}
			s.wmu.Unlock()
			if err != nil {
				s.fail(err)
				return 0, err
			}
			return itt, nil
		}
		s.mu.Unlock()
		s.wmu.Unlock()
		select {
		case <-s.window:
		case <-s.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Session) wait(ctx context.Context, itt uint32, c *call) error {
	select {
	case <-c.done:
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if c.resp == nil && c.status == 0 && err != nil && c.got == 0 && c.flags == 0 {
			return fmt.Errorf("%w: %v", ErrClosed, err)
		}
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.tasks, itt)
		s.mu.Unlock()
		return ctx.Err()
	}
}

// request sends a non-SCSI request (text, logout, NOP, TMF) and waits.
func (s *Session) request(ctx context.Context, op byte, flags byte, data []byte, hdr func(*pdu.PDU)) (*pdu.PDU, error) {
	c := &call{done: make(chan struct{})}
	p := &pdu.PDU{}
	p.SetOpcode(op, true)
	p.Header[1] = pdu.FlagFinal | flags
	p.SetU32(20, noTag)
	if hdr != nil {
		hdr(p)
	}
	p.Data = data
	itt, err := s.send(ctx, true, c, p, nil)
	if err != nil {
		return nil, err
	}
	if err := s.wait(ctx, itt, c); err != nil {
		return nil, err
	}
	if c.resp == nil {
		return nil, ErrClosed
	}
	if c.resp.Opcode() == pdu.OpReject {
		return c.resp, fmt.Errorf("iscsi: request rejected, reason %#x", c.resp.Header[2])
	}
	return c.resp, nil
}

// Response is a finished SCSI command.
type Response struct {
	Status   byte
	Sense    []byte
	Data     []byte // data-in received
	Residual uint32
	Overflow bool
	Under    bool
}

// Err returns a *SCSIError unless the status is GOOD.
func (r *Response) Err() error {
	if r.Status == 0 {
		return nil
	}
	e := &SCSIError{Status: r.Status, Sense: r.Sense}
	if len(r.Sense) >= 14 {
		switch r.Sense[0] & 0x7f {
		case 0x70, 0x71:
			e.Key, e.ASC, e.ASCQ = r.Sense[2]&0x0f, r.Sense[12], r.Sense[13]
		case 0x72, 0x73:
			e.Key, e.ASC, e.ASCQ = r.Sense[1]&0x0f, r.Sense[2], r.Sense[3]
		}
	} else if len(r.Sense) >= 4 && r.Sense[0]&0x7f >= 0x72 {
		e.Key, e.ASC, e.ASCQ = r.Sense[1]&0x0f, r.Sense[2], r.Sense[3]
	}
	return e
}

// Command runs one SCSI command on LUN lun: dataOut is sent (immediate,
// unsolicited and solicited as negotiated), up to inLen bytes are read
// into the response.
func (s *Session) Command(ctx context.Context, lun uint64, cdb []byte, dataOut []byte, inLen int) (*Response, error) {
	return s.CommandBuf(ctx, lun, cdb, dataOut, make([]byte, inLen))
}

// CommandBuf is Command reading data-in into in (its length is the
// expected transfer length).
func (s *Session) CommandBuf(ctx context.Context, lun uint64, cdb []byte, dataOut []byte, in []byte) (*Response, error) {
	if len(cdb) > 16 {
		return nil, errors.New("iscsi: CDB longer than 16 bytes")
	}
	c := &call{done: make(chan struct{}), dataIn: in, dataOut: dataOut, lun: lun}
	p := &pdu.PDU{}
	p.SetOpcode(pdu.OpSCSICommand, false)
	p.Header[1] = pdu.FlagFinal | 0x01 // simple task
	edtl := len(in)
	if len(dataOut) > 0 {
		p.Header[1] |= pdu.FlagWrite
		edtl = len(dataOut)
	}
	if len(in) > 0 {
		p.Header[1] |= pdu.FlagRead
	}
	p.SetLUN(lun)
	p.SetU32(20, uint32(edtl))
	copy(p.Header[32:48], cdb)
	unsolicited := 0
	if len(dataOut) > 0 && s.immediateData {
		unsolicited = min(len(dataOut), s.firstBurst, s.maxSend)
		p.Data = dataOut[:unsolicited]
	}
	more := len(dataOut) > 0 && !s.initialR2T && unsolicited < min(len(dataOut), s.firstBurst)
	if more {
		p.Header[1] &^= pdu.FlagFinal
	}
	var after func(uint32)
	if more {
		end := min(len(dataOut), s.firstBurst)
		after = func(itt uint32) { s.sendDataLocked(itt, c, unsolicited, end-unsolicited, noTag) }
	}
	itt, err := s.send(ctx, false, c, p, after)
	if err != nil {
		return nil, err
	}
	if err := s.wait(ctx, itt, c); err != nil {
		return nil, err
	}
	if c.resp != nil && c.resp.Opcode() == pdu.OpReject {
		return nil, fmt.Errorf("iscsi: command rejected, reason %#x", c.resp.Header[2])
	}
	if c.resp == nil && c.flags == 0 && c.status == 0 {
		return nil, ErrClosed
	}
	r := &Response{Status: c.status, Sense: c.sense, Data: in[:c.got], Residual: c.residual,
		Overflow: c.flags&pdu.FlagOverflow != 0, Under: c.flags&pdu.FlagUnder != 0}
	return r, nil
}

// Read reads blocks at lba into buf (len(buf) is a multiple of the block
// size) with READ(16).
func (s *Session) Read(ctx context.Context, lba uint64, buf []byte, blockSize int) error {
	return s.ReadLUN(ctx, 0, lba, buf, blockSize)
}

// ReadLUN is Read from another LUN than 0 (tgt, for one, serves disks
// from LUN 1 up). lun is the 8-byte LUN field as Command takes it (SAM:
// LUN n below 256 is n<<48).
func (s *Session) ReadLUN(ctx context.Context, lun, lba uint64, buf []byte, blockSize int) error {
	cdb := make([]byte, 16)
	cdb[0] = 0x88
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], uint32(len(buf)/blockSize))
	r, err := s.CommandBuf(ctx, lun, cdb, nil, buf)
	if err != nil {
		return err
	}
	if err := r.Err(); err != nil {
		return err
	}
	if len(r.Data) != len(buf) {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// Read10 reads with READ(10).
func (s *Session) Read10(ctx context.Context, lba uint32, buf []byte, blockSize int) error {
	cdb := make([]byte, 10)
	cdb[0] = 0x28
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], uint16(len(buf)/blockSize))
	r, err := s.CommandBuf(ctx, 0, cdb, nil, buf)
	if err != nil {
		return err
	}
	return r.Err()
}

// Write writes data at lba with WRITE(16), FUA when fua.
func (s *Session) Write(ctx context.Context, lba uint64, data []byte, blockSize int, fua bool) error {
	return s.WriteLUN(ctx, 0, lba, data, blockSize, fua)
}

// WriteLUN is Write to another LUN than 0.
func (s *Session) WriteLUN(ctx context.Context, lun, lba uint64, data []byte, blockSize int, fua bool) error {
	cdb := make([]byte, 16)
	cdb[0] = 0x8a
	if fua {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint64(cdb[2:], lba)
	binary.BigEndian.PutUint32(cdb[10:], uint32(len(data)/blockSize))
	r, err := s.Command(ctx, lun, cdb, data, 0)
	if err != nil {
		return err
	}
	return r.Err()
}

// Write10 writes with WRITE(10).
func (s *Session) Write10(ctx context.Context, lba uint32, data []byte, blockSize int, fua bool) error {
	cdb := make([]byte, 10)
	cdb[0] = 0x2a
	if fua {
		cdb[1] = 0x08
	}
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], uint16(len(data)/blockSize))
	r, err := s.Command(ctx, 0, cdb, data, 0)
	if err != nil {
		return err
	}
	return r.Err()
}

// SyncCache sends SYNCHRONIZE CACHE(10) for the whole unit.
func (s *Session) SyncCache(ctx context.Context) error {
	return s.SyncCacheLUN(ctx, 0)
}

// SyncCacheLUN is SyncCache of another LUN than 0.
func (s *Session) SyncCacheLUN(ctx context.Context, lun uint64) error {
	cdb := make([]byte, 10)
	cdb[0] = 0x35
	r, err := s.Command(ctx, lun, cdb, nil, 0)
	if err != nil {
		return err
	}
	return r.Err()
}

// ReadCapacity returns the number of blocks and the block size (READ
// CAPACITY(16)).
func (s *Session) ReadCapacity(ctx context.Context) (blocks uint64, blockSize int, err error) {
	return s.ReadCapacityLUN(ctx, 0)
}

// ReadCapacityLUN is ReadCapacity of another LUN than 0.
func (s *Session) ReadCapacityLUN(ctx context.Context, lun uint64) (blocks uint64, blockSize int, err error) {
	cdb := make([]byte, 16)
	cdb[0], cdb[1] = 0x9e, 0x10
	binary.BigEndian.PutUint32(cdb[10:], 32)
	r, err := s.Command(ctx, lun, cdb, nil, 32)
	if err != nil {
		return 0, 0, err
	}
	if err := r.Err(); err != nil {
		return 0, 0, err
	}
	if len(r.Data) < 12 {
		return 0, 0, io.ErrUnexpectedEOF
	}
	return binary.BigEndian.Uint64(r.Data) + 1, int(binary.BigEndian.Uint32(r.Data[8:])), nil
}

// TestUnitReady sends TEST UNIT READY.
func (s *Session) TestUnitReady(ctx context.Context) error {
	r, err := s.Command(ctx, 0, make([]byte, 6), nil, 0)
	if err != nil {
		return err
	}
	return r.Err()
}

// Ping sends a NOP-Out and waits for the NOP-In.
func (s *Session) Ping(ctx context.Context, data []byte) ([]byte, error) {
	r, err := s.request(ctx, pdu.OpNOPOut, 0, data, nil)
	if err != nil {
		return nil, err
	}
	return r.Data, nil
}

// TaskManagement sends a task management request and returns the
// response code.
func (s *Session) TaskManagement(ctx context.Context, function byte, lun uint64, refITT uint32) (byte, error) {
	r, err := s.request(ctx, pdu.OpTaskMgmt, function, nil, func(p *pdu.PDU) {
		p.Header[1] = pdu.FlagFinal | function
		p.SetLUN(lun)
		p.SetU32(20, refITT)
	})
	if err != nil {
		return 0, err
	}
	return r.Header[2], nil
}

// Logout closes the session (reason 0) and the connection.
func (s *Session) Logout(ctx context.Context) error {
	_, err := s.request(ctx, pdu.OpLogout, 0, nil, nil)
	s.nc.Close()
	return err
}

// Close drops the connection without logging out.
func (s *Session) Close() error {
	s.fail(ErrClosed)
	return nil
}

// Conn is the session's TCP connection, for tests that break it.
func (s *Session) Conn() net.Conn { return s.nc }

// TSIH is the target's session handle.
func (s *Session) TSIH() uint16 { return s.tsih }
