package target

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
	"github.com/dls-project/dls/plugins/protocol/iscsi/scsi"
)

// patternResolver serves one volume whose every 4-byte word holds its
// own offset, so that a read of the wrong place or of a reused buffer
// shows.
type patternResolver struct {
	staticResolver
	vol *memVol
}

func (r patternResolver) Attach(context.Context, string, Access) (Volume, error) { return r.vol, nil }

func patternVolume(size int) *memVol {
	b := make([]byte, size)
	for i := 0; i < size; i += 4 {
		binary.BigEndian.PutUint32(b[i:], uint32(i))
	}
	return &memVol{b: b}
}

// peakGauge records the highest value Hooks.Buffers reported.
type peakGauge struct{ now, peak atomic.Int64 }

func (g *peakGauge) set(n int64) {
	g.now.Store(n)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// session logs in over TCP as its own initiator port (ISID) and returns
// serveTCP serves srv on a loopback port until the test ends, and
// returns the port's address.
func serveTCP(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(t.Context(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return ln.Addr().String()
}

// the connection.
func tcpSession(t *testing.T, addr string, isid byte) (net.Conn, *pdu.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	login := loginPDU(1, 3, true, "InitiatorName", testInitiator, "TargetName", testTarget, "SessionType", "Normal",
		"MaxRecvDataSegmentLength", "262144", "ImmediateData", "Yes", "InitialR2T", "No",
		"FirstBurstLength", "262144", "MaxBurstLength", "16776192")
	login[13] = isid
	if _, err := nc.Write(login); err != nil {
		t.Fatal(err)
	}
	r := &pdu.Reader{R: nc, MaxData: 1 << 24}
	var p pdu.PDU
	if err := r.Read(&p); err != nil || p.Opcode() != pdu.OpLoginResp || binary.BigEndian.Uint16(p.Header[36:]) != 0 {
		t.Fatalf("login of ISID %d: %v %x", isid, err, p.Header[36:38])
	}
	return nc, r
}

func read10(lba uint32, blocks uint16) []byte {
	cdb := make([]byte, 10)
	cdb[0] = 0x28
	binary.BigEndian.PutUint32(cdb[2:], lba)
	binary.BigEndian.PutUint16(cdb[7:], blocks)
	return cdb
}

func write10(lba uint32, blocks uint16) []byte {
	cdb := read10(lba, blocks)
	cdb[0] = 0x2a
	return cdb
}

// answer is what came back for one command.
type answer struct {
	status byte
	data   []byte
}

// collect reads answers until every one of n commands (ITTs 0..n-1) has
// its status; data-in is placed at its buffer offset.
func collect(r *pdu.Reader, n int, sizes []int) ([]answer, error) {
	out := make([]answer, n)
	for i := range out {
		out[i].status = 0xff
		out[i].data = make([]byte, sizes[i])
	}
	left := n
	var p pdu.PDU
	for left > 0 {
		if err := r.Read(&p); err != nil {
			return nil, fmt.Errorf("%d answers missing: %w", left, err)
		}
		itt := int(p.ITT())
		switch p.Opcode() {
		case pdu.OpDataIn:
			off := int(p.U32(40))
			copy(out[itt].data[off:], p.Data)
			if p.Flags()&pdu.FlagStatus != 0 {
				out[itt].status = p.Header[3]
				left--
			}
		case pdu.OpSCSIResponse:
			out[itt].status = p.Header[3]
			left--
		case pdu.OpR2T:
			return nil, fmt.Errorf("R2T for ITT %d: all data was sent unsolicited", itt)
		default:
			return nil, fmt.Errorf("unexpected answer opcode %#x", p.Opcode())
		}
	}
	return out, nil
}

// TestConcurrentReadsBoundedByPool: sessions whose READs together ask for
// many times the buffer pool, one of them larger than the whole pool, all
// complete with the right data, and the bytes reserved never go over the
// pool's size.
func TestConcurrentReadsBoundedByPool(t *testing.T) {
	const (
		limit    = 1 << 20
		sessions = 8
		perSess  = 6
		volSize  = 4 << 20
	)
	var g peakGauge
	vol := patternVolume(volSize)
	srv := &Server{Resolver: patternResolver{vol: vol}, LoginTimeout: 5 * time.Second,
		MaxBufferBytes: limit, Hooks: Hooks{Buffers: g.set}}
	addr := serveTCP(t, srv)

	var wg sync.WaitGroup
	for s := range sessions {
		nc, r := tcpSession(t, addr, byte(s+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			sizes := make([]int, perSess)
			lbas := make([]uint32, perSess)
			var cmds []byte
			for i := range perSess {
				blocks := uint16(512 + 128*((s+i)%4)) // 256 to 448 KiB
				if s == 0 && i == 0 {
					blocks = 4096 // 2 MiB: twice the pool
				}
				lbas[i] = uint32((s*perSess + i) * 97 % (volSize/512 - 4096))
				sizes[i] = int(blocks) * 512
				c := scsiPDU(uint32(i), read10(lbas[i], blocks), uint32(sizes[i]), pdu.FlagRead, nil)
				binary.BigEndian.PutUint32(c[16:], uint32(i)) // ITT
				cmds = append(cmds, c...)
			}
			if _, err := nc.Write(cmds); err != nil {
				t.Error(err)
				return
			}
			answers, err := collect(r, perSess, sizes)
			if err != nil {
				t.Errorf("session %d: %v", s, err)
				return
			}
			for i, a := range answers {
				if a.status != scsi.StatusGood {
					t.Errorf("session %d read %d: status %#x", s, i, a.status)
					continue
				}
				want := vol.b[int(lbas[i])*512:][:sizes[i]]
				if !bytes.Equal(a.data, want) {
					t.Errorf("session %d read %d (lba %d, %d bytes): wrong data", s, i, lbas[i], sizes[i])
				}
			}
		}()
	}
	wg.Wait()
	if p := g.peak.Load(); p > limit || p == 0 {
		t.Fatalf("peak buffer bytes %d, limit %d", p, limit)
	}
	// Every reservation went back once its data was sent.
	deadline := time.Now().Add(5 * time.Second)
	for g.now.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := g.now.Load(); n != 0 {
		t.Fatalf("%d buffer bytes still reserved after every read answered", n)
	}
}

// TestConcurrentWritesBoundedByPool: sessions writing with immediate and
// unsolicited data together more than the pool all complete, the data
// lands, and the pool is never over its size.
func TestConcurrentWritesBoundedByPool(t *testing.T) {
	const (
		limit    = 1 << 20
		sessions = 6
		perSess  = 4
		size     = 256 << 10
		volSize  = sessions * perSess * size
	)
	var g peakGauge
	vol := &memVol{b: make([]byte, volSize)}
	srv := &Server{Resolver: patternResolver{vol: vol}, LoginTimeout: 5 * time.Second,
		MaxBufferBytes: limit, Hooks: Hooks{Buffers: g.set}}
	addr := serveTCP(t, srv)
	var wg sync.WaitGroup
	var busy atomic.Int64
	for s := range sessions {
		nc, r := tcpSession(t, addr, byte(s+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cmds []byte
			sizes := make([]int, perSess)
			for i := range perSess {
				k := s*perSess + i
				data := bytes.Repeat([]byte{byte(k + 1)}, size)
				c := scsiPDU(uint32(i), write10(uint32(k*size/512), size/512), size, pdu.FlagWrite, data)
				binary.BigEndian.PutUint32(c[16:], uint32(i))
				cmds = append(cmds, c...)
			}
			if _, err := nc.Write(cmds); err != nil {
				t.Error(err)
				return
			}
			answers, err := collect(r, perSess, sizes)
			if err != nil {
				t.Errorf("session %d: %v", s, err)
				return
			}
			cmdSN := uint32(perSess)
			for i, a := range answers {
				switch a.status {
				case scsi.StatusGood:
				case scsi.StatusBusy:
					// A connection holding a write's buffer does not
					// wait for another's: that is the initiator's to
					// retry.
					busy.Add(1)
					k := s*perSess + i
					data := bytes.Repeat([]byte{byte(k + 1)}, size)
					for {
						retry := scsiPDU(cmdSN, write10(uint32(k*size/512), size/512), size, pdu.FlagWrite, data)
						cmdSN++
						binary.BigEndian.PutUint32(retry[16:], 0)
						if _, err := nc.Write(retry); err != nil {
							t.Error(err)
							return
						}
						a, err := collect(r, 1, []int{0})
						if err != nil {
							t.Errorf("session %d retry: %v", s, err)
							return
						}
						if a[0].status == scsi.StatusGood {
							break
						}
						if a[0].status != scsi.StatusBusy {
							t.Errorf("retried write: status %#x", a[0].status)
							return
						}
						time.Sleep(time.Millisecond)
					}
				default:
					t.Errorf("session %d write %d: status %#x", s, i, a.status)
				}
			}
		}()
	}
	wg.Wait()
	vol.mu.Lock()
	defer vol.mu.Unlock()
	for k := range sessions * perSess {
		if got := vol.b[k*size : (k+1)*size]; !bytes.Equal(got, bytes.Repeat([]byte{byte(k + 1)}, size)) {
			t.Errorf("write %d did not land", k)
		}
	}
	if p := g.peak.Load(); p > limit || p == 0 {
		t.Fatalf("peak buffer bytes %d, limit %d", p, limit)
	}
	t.Logf("%d writes answered BUSY and were retried", busy.Load())
}

// TestReadBusyAfterBufferWait: a READ that cannot get buffer bytes within
// BufferWait ends with BUSY, and the pool is left as it was.
func TestReadBusyAfterBufferWait(t *testing.T) {
	srv := &Server{Resolver: patternResolver{vol: patternVolume(1 << 20)}, LoginTimeout: 5 * time.Second,
		MaxBufferBytes: 64 << 10, BufferWait: 50 * time.Millisecond}
	addr := serveTCP(t, srv)
	nc, r := tcpSession(t, addr, 1)
	held, err := srv.pool().Acquire(t.Context(), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(scsiPDU(0, read10(0, 8), 4096, pdu.FlagRead, nil)); err != nil {
		t.Fatal(err)
	}
	// ITT of scsiPDU is its CmdSN: 0.
	if a, err := collect(r, 1, []int{4096}); err != nil || a[0].status != scsi.StatusBusy {
		t.Fatalf("%v; status %#x, want BUSY", err, a[0].status)
	}
	srv.pool().Release(held)
	again := scsiPDU(1, read10(0, 8), 4096, pdu.FlagRead, nil)
	binary.BigEndian.PutUint32(again[16:], 0)
	if _, err := nc.Write(again); err != nil {
		t.Fatal(err)
	}
	a, err := collect(r, 1, []int{4096})
	if err != nil {
		t.Fatal(err)
	}
	if a[0].status != scsi.StatusGood || binary.BigEndian.Uint32(a[0].data[4:]) != 4 {
		t.Fatalf("after the pool emptied: status %#x data %x", a[0].status, a[0].data[:8])
	}
	// The data-in's bytes go back after the writer has sent it, so the
	// client can read the response a moment before the release lands.
	deadline := time.Now().Add(5 * time.Second)
	for {
		in, limit := srv.BufferBytes()
		if in == 0 && limit == 64<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BufferBytes %d of %d, want 0 of %d", in, limit, 64<<10)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriteBusyWhileHoldingWriteBuffer: a connection whose write holds the
// whole pool while it waits for its data-out does not wait for more: its
// next write ends with BUSY at once (waiting could deadlock, the data
// that would free the pool being behind it in the stream), and the first
// write completes once its data arrives.
func TestWriteBusyWhileHoldingWriteBuffer(t *testing.T) {
	const limit = 512 << 10
	vol := &memVol{b: make([]byte, 1<<20)}
	srv := &Server{Resolver: patternResolver{vol: vol}, LoginTimeout: 5 * time.Second, MaxBufferBytes: limit}
	addr := serveTCP(t, srv)
	nc, r := tcpSession(t, addr, 1)
	// Write A: 512 KiB, no unsolicited data (F set): the target asks for
	// it with an R2T, holding the whole pool meanwhile.
	if _, err := nc.Write(scsiPDU(0, write10(0, limit/512), limit, pdu.FlagWrite, nil)); err != nil {
		t.Fatal(err)
	}
	var p pdu.PDU
	if err := r.Read(&p); err != nil || p.Opcode() != pdu.OpR2T || p.U32(44) != limit {
		t.Fatalf("want an R2T for all of write A: %v, opcode %#x length %d", err, p.Opcode(), p.U32(44))
	}
	ttt := p.U32(20)
	if in, _ := srv.BufferBytes(); in != limit {
		t.Fatalf("buffer bytes %d while write A waits for data, want %d", in, limit)
	}
	// Write B, on the same connection: BUSY, at once.
	b := scsiPDU(1, write10(1024, 8), 4096, pdu.FlagWrite, make([]byte, 4096))
	start := time.Now()
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := r.Read(&p); err != nil || p.Opcode() != pdu.OpSCSIResponse || p.ITT() != 1 || p.Header[3] != scsi.StatusBusy {
		t.Fatalf("write B: %v, opcode %#x itt %d status %#x, want BUSY", err, p.Opcode(), p.ITT(), p.Header[3])
	}
	if d := time.Since(start); d > DefaultBufferWait/2 {
		t.Fatalf("write B waited %s for its BUSY", d)
	}
	// A's data: two Data-Outs of 256 KiB.
	data := bytes.Repeat([]byte{0xa5}, limit)
	for i := range 2 {
		o := &pdu.PDU{}
		o.SetOpcode(pdu.OpDataOut, false)
		if i == 1 {
			o.Header[1] = pdu.FlagFinal
		}
		o.SetU32(16, 0) // ITT of A
		o.SetU32(20, ttt)
		o.SetU32(36, uint32(i))
		o.SetU32(40, uint32(i*limit/2))
		o.Data = data[i*limit/2 : (i+1)*limit/2]
		if _, err := nc.Write(o.Encode(nil, false, false)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Read(&p); err != nil || p.Opcode() != pdu.OpSCSIResponse || p.ITT() != 0 || p.Header[3] != scsi.StatusGood {
		t.Fatalf("write A: %v, opcode %#x itt %d status %#x, want GOOD", err, p.Opcode(), p.ITT(), p.Header[3])
	}
	vol.mu.Lock()
	landed := bytes.Equal(vol.b[:limit], data)
	vol.mu.Unlock()
	if !landed {
		t.Fatal("write A's data did not land")
	}
	deadline := time.Now().Add(5 * time.Second)
	for in, _ := srv.BufferBytes(); in != 0; in, _ = srv.BufferBytes() {
		if time.Now().After(deadline) {
			t.Fatalf("%d buffer bytes still held after write A", in)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestITTReusedOnceAnswered: an initiator may reuse an ITT as soon as it
// has read the command's status. Commands sent back to back, each with
// ITT 0 and each sent the moment the previous status arrives, all
// complete; none is refused as a task still in progress.
func TestITTReusedOnceAnswered(t *testing.T) {
	srv := &Server{Resolver: patternResolver{vol: patternVolume(1 << 20)}, LoginTimeout: 5 * time.Second}
	addr := serveTCP(t, srv)
	nc, r := tcpSession(t, addr, 1)
	for i := range 2000 {
		cmd := scsiPDU(uint32(i), read10(0, 1), 512, pdu.FlagRead, nil)
		binary.BigEndian.PutUint32(cmd[16:], 0)
		if _, err := nc.Write(cmd); err != nil {
			t.Fatal(err)
		}
		a, err := collect(r, 1, []int{512})
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if a[0].status != scsi.StatusGood {
			t.Fatalf("command %d: status %#x", i, a[0].status)
		}
	}
}
