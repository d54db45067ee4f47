package target

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
	"github.com/dls-project/dls/plugins/protocol/iscsi/scsi"
)

// task is one SCSI command of a connection.
type task struct {
	itt       uint32
	lun       uint64
	cdb       []byte
	edtl      uint32
	read      bool
	write     bool
	immediate bool
	start     time.Time

	// Bytes reserved from the server's buffer pool: for the data-out
	// buffer (given back by conn.free, from whichever goroutine ends the
	// task, while the reader may look at it), and for the data-in (the
	// command's goroutine only; given back once it was sent).
	outHeld atomic.Int64
	inHeld  int64

	// Data-out state (reader goroutine only, under conn.mu for the table).
	buf       *[]byte
	data      []byte
	received  int
	solicited int // next offset an R2T asks for
	r2tOut    int // outstanding R2Ts
	r2tSN     uint32

	answered bool // its status is queued (under conn.mu); see conn.answered
	bursts   map[uint32]*burst
	unsolSN  uint32 // next DataSN of unsolicited data-out
	running  bool
	aborted  atomic.Bool
	done     chan struct{}
}

type burst struct {
	offset, length, received int
	dataSN                   uint32
}

// free drops t's data-out buffer and gives its bytes back to the pool.
func (c *conn) free(t *task) {
	if t.buf != nil {
		scsi.PutBuf(t.buf)
		t.buf, t.data = nil, nil
	}
	if n := t.outHeld.Swap(0); n > 0 {
		c.srv.pool().Release(n)
	}
}

// errNoBuffers: a command waited BufferWait for buffer bytes, or could
// not wait for them; it ends with BUSY.
var errNoBuffers = errors.New("no buffer bytes free")

// reserveIn reserves the bytes of a data-in buffer of n bytes, waiting
// (bounded) for them. It runs on the command's goroutine, never the
// reader's: the reader goes on taking PDUs, among them the data-out of
// writes that hold bytes.
func (c *conn) reserveIn(n int) (int64, error) {
	want := int64(scsi.BufCap(n))
	pool := c.srv.pool()
	// The usual case, without a deadline's timer per command.
	if g, ok := pool.TryAcquire(want); ok {
		return g, nil
	}
	ctx, cancel := context.WithTimeout(c.live, c.srv.bufferWait())
	defer cancel()
	g, err := pool.Acquire(ctx, want)
	if err != nil && c.live.Err() == nil {
		return 0, errNoBuffers
	}
	return g, err
}

// reserveOut reserves the bytes of a data-out buffer of n bytes on the
// reader's goroutine. The reader waits for them (bounded) only while its
// connection holds no buffer of a write still waiting for its data-out:
// that data is behind the command in the stream, so waiting then could
// deadlock with another connection doing the same. Such a command ends
// with BUSY at once instead.
func (c *conn) reserveOut(n int) (int64, error) {
	want := int64(scsi.BufCap(n))
	pool := c.srv.pool()
	if g, ok := pool.TryAcquire(want); ok {
		return g, nil
	}
	c.mu.Lock()
	holding := false
	for _, o := range c.tasks {
		if o.outHeld.Load() > 0 && !o.running {
			holding = true
			break
		}
	}
	c.mu.Unlock()
	if holding {
		return 0, errNoBuffers
	}
	ctx, cancel := context.WithTimeout(c.live, c.srv.bufferWait())
	defer cancel()
	g, err := pool.Acquire(ctx, want)
	if err != nil && c.live.Err() == nil {
		return 0, errNoBuffers
	}
	return g, err
}

// busy is the result of a command that got no buffer bytes.
func busy() scsi.Result { return scsi.Result{Status: scsi.StatusBusy, Transfer: -1} }

// maxEDTL bounds the data a command may ask to move: one maximal transfer,
// or a COMPARE AND WRITE, plus slack for parameter lists.
const maxEDTL = scsi.MaxTransferBytes + 64<<10

func (c *conn) readLoop() error {
	var p pdu.PDU
	for {
		if err := c.rd.ReadHeader(&p); err != nil {
			if errors.Is(err, pdu.ErrHeaderDigest) {
				c.srv.fail("digest")
			}
			return err
		}
		if c.rd.TooLong(&p) {
			// A data segment longer than we declared: throw it away and
			// reject the PDU; the connection stays in step.
			c.srv.fail("protocol")
			if err := c.rd.Skip(&p); err != nil && !errors.Is(err, pdu.ErrTooLong) {
				return err
			}
			c.reject(&p, pdu.RejectProtocolError)
			continue
		}
		var err error
		switch p.Opcode() {
		case pdu.OpSCSICommand:
			err = c.scsiCommand(&p)
		case pdu.OpDataOut:
			err = c.dataOut(&p)
		case pdu.OpNOPOut:
			err = c.nopOut(&p)
		case pdu.OpTaskMgmt, pdu.OpText, pdu.OpLogout:
			if err = c.readAll(&p); err != nil {
				break
			}
			if !p.Immediate() && !c.inOrder(&p) {
				continue
			}
			err = c.control(&p)
		case pdu.OpSNACK:
			if err = c.rd.Skip(&p); err == nil {
				c.reject(&p, pdu.RejectSNACK)
			}
		default:
			c.srv.fail("protocol")
			if err = c.rd.Skip(&p); err == nil {
				c.reject(&p, pdu.RejectNotSupported)
			}
		}
		if errors.Is(err, pdu.ErrDataDigest) {
			c.srv.fail("digest")
			c.reject(&p, pdu.RejectDigestError)
			continue
		}
		if errors.Is(err, errLogout) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var (
	errLogout = errors.New("logged out")
)

// readAll reads p's data segment into p.Data.
func (c *conn) readAll(p *pdu.PDU) error {
	n := p.DataLen()
	if cap(p.Data) < n {
		p.Data = make([]byte, n)
	}
	p.Data = p.Data[:n]
	return c.rd.ReadData(p, p.Data)
}

// inOrder applies CmdSN windowing to a non-immediate command: it is
// accepted when its CmdSN lies in [ExpCmdSN, MaxCmdSN as last advertised]
// and was not seen before; ExpCmdSN then moves past every CmdSN received without a gap.
// Commands may run out of order (they are SIMPLE tasks). Others are
// dropped, as RFC 7143 says.
func (c *conn) inOrder(p *pdu.PDU) bool {
	sess := c.sess
	cmdSN := p.U32(24)
	exp, max := sess.expCmdSN.Load(), sess.advMaxCmdSN.Load()
	if snLT(cmdSN, exp) || snLT(max, cmdSN) || sess.ahead[cmdSN] {
		c.srv.fail("cmdsn")
		c.log().Debug("command outside the CmdSN window dropped", "cmdsn", cmdSN, "expcmdsn", exp, "maxcmdsn", max)
		return false
	}
	if cmdSN != exp {
		sess.ahead[cmdSN] = true
		return true
	}
	exp++
	for sess.ahead[exp] {
		delete(sess.ahead, exp)
		exp++
	}
	sess.expCmdSN.Store(exp)
	return true
}

// completeCmdSN opens the window by one when a non-immediate command ends.
func (c *conn) completeCmdSN(immediate bool) {
	if !immediate {
		c.sess.maxCmdSN.Add(1)
	}
}

func (c *conn) scsiCommand(p *pdu.PDU) error {
	sess := c.sess
	if sess.discovery {
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.reject(p, pdu.RejectProtocolError)
		return nil
	}
	flags := p.Flags()
	t := &task{
		itt: p.ITT(), lun: p.LUN(), edtl: p.U32(20),
		read: flags&pdu.FlagRead != 0, write: flags&pdu.FlagWrite != 0,
		immediate: p.Immediate(), done: make(chan struct{}),
	}
	t.cdb = append([]byte(nil), p.Header[32:48]...)
	n := p.DataLen()
	if !t.immediate && !c.inOrder(p) {
		return c.rd.Skip(p)
	}
	t.start = time.Now()
	if n > 0 && (!t.write || !c.p.immediateData || uint32(n) > t.edtl || n > c.p.firstBurst) {
		c.srv.fail("protocol")
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.completeCmdSN(t.immediate)
		c.reject(p, pdu.RejectProtocolError)
		return nil
	}
	c.mu.Lock()
	if old, dup := c.tasks[t.itt]; dup && !old.answered {
		c.mu.Unlock()
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.completeCmdSN(t.immediate)
		c.reject(p, pdu.RejectTaskInProgress)
		return nil
	}
	c.tasks[t.itt] = t
	c.tasksWG.Add(1)
	c.mu.Unlock()

	if !t.write || t.edtl == 0 {
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.run(t)
		return nil
	}
	if t.edtl > maxEDTL {
		// Too much to buffer: refuse the command, swallow its data.
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.failTask(t, scsi.Result{Status: scsi.StatusCheckCondition,
			Sense: scsi.Sense{Key: scsi.KeyIllegalRequest, ASC: 0x24}.Bytes(false), Transfer: -1})
		return nil
	}
	held, err := c.reserveOut(int(t.edtl))
	if err != nil {
		if !errors.Is(err, errNoBuffers) {
			return fmt.Errorf("wait for buffer bytes: %w", err) // closed
		}
		c.srv.fail("buffers")
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.failTask(t, busy())
		return nil
	}
	t.outHeld.Store(held)
	t.buf = scsi.GetBuf(int(t.edtl))
	t.data = (*t.buf)[:t.edtl]
	if n > 0 {
		if err := c.rd.ReadData(p, t.data[:n]); err != nil {
			if errors.Is(err, pdu.ErrDataDigest) {
				c.dropTask(t)
				c.completeCmdSN(t.immediate)
			}
			return err
		}
		t.received = n
	}
	// Unsolicited data: with F clear, Data-Out PDUs follow up to
	// FirstBurstLength; R2Ts ask for the rest.
	unsolicited := n
	if flags&pdu.FlagFinal == 0 && !c.p.initialR2T {
		unsolicited = min(int(t.edtl), c.p.firstBurst)
	}
	t.solicited = unsolicited
	if t.received >= int(t.edtl) {
		c.run(t)
		return nil
	}
	c.mu.Lock()
	c.sendR2Ts(t)
	c.mu.Unlock()
	return nil
}

// sendR2Ts asks for more data-out, up to MaxOutstandingR2T bursts.
// c.mu is held.
func (c *conn) sendR2Ts(t *task) {
	for t.r2tOut < c.p.maxOutR2T && t.solicited < int(t.edtl) {
		length := min(int(t.edtl)-t.solicited, c.p.maxBurst)
		ttt := c.nextTTT
		c.nextTTT++
		if c.nextTTT == noTag {
			c.nextTTT = 1
		}
		if t.bursts == nil {
			t.bursts = map[uint32]*burst{}
		}
		t.bursts[ttt] = &burst{offset: t.solicited, length: length}
		o := &outPDU{stat: 1}
		o.p.SetOpcode(pdu.OpR2T, false)
		o.p.Header[1] = pdu.FlagFinal
		o.p.SetLUN(t.lun)
		o.p.SetU32(16, t.itt)
		o.p.SetU32(20, ttt)
		o.p.SetU32(36, t.r2tSN)
		o.p.SetU32(40, uint32(t.solicited))
		o.p.SetU32(44, uint32(length))
		t.r2tSN++
		t.r2tOut++
		t.solicited += length
		c.send(o)
	}
}

func (c *conn) dataOut(p *pdu.PDU) error {
	itt, ttt := p.ITT(), p.U32(20)
	off := int(p.U32(40))
	n := p.DataLen()
	c.mu.Lock()
	t := c.tasks[itt]
	if t == nil || t.running || t.data == nil {
		c.mu.Unlock()
		// Data for a task that is gone (aborted, refused): drop it.
		return c.rd.Skip(p)
	}
	var b *burst
	if ttt != noTag {
		b = t.bursts[ttt]
	}
	bad := off+n > int(t.edtl) || (ttt != noTag && b == nil) ||
		(b != nil && (off < b.offset || off+n > b.offset+b.length)) ||
		(b == nil && off+n > c.p.firstBurst)
	badSN := false
	if !bad {
		want := t.unsolSN
		if b != nil {
			want = b.dataSN
		}
		badSN = p.U32(36) != want
	}
	c.mu.Unlock()
	if badSN {
		// A lost or reordered Data-Out cannot be recovered at
		// ErrorRecoveryLevel 0: the command fails, the session goes on.
		c.srv.fail("datasn")
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.failTask(t, scsi.Result{Status: scsi.StatusCheckCondition,
			Sense: scsi.Sense{Key: scsi.KeyAbortedCommand, ASC: 0x4b}.Bytes(false), Transfer: -1})
		return nil
	}
	if bad {
		c.srv.fail("protocol")
		if err := c.rd.Skip(p); err != nil {
			return err
		}
		c.reject(p, pdu.RejectProtocolError)
		return nil
	}
	if err := c.rd.ReadData(p, t.data[off:off+n]); err != nil {
		return err
	}
	c.mu.Lock()
	t.received += n
	if b == nil {
		t.unsolSN++
	}
	if b != nil {
		b.received += n
		b.dataSN++
		if p.Flags()&pdu.FlagFinal != 0 || b.received >= b.length {
			delete(t.bursts, ttt)
			t.r2tOut--
		}
	}
	ready := t.received >= int(t.edtl) && len(t.bursts) == 0
	if !ready && c.tasks[itt] == t {
		c.sendR2Ts(t)
	}
	c.mu.Unlock()
	if ready {
		c.run(t)
	}
	return nil
}

// dropTask forgets a task that never ran.
func (c *conn) dropTask(t *task) {
	c.mu.Lock()
	if c.tasks[t.itt] == t {
		delete(c.tasks, t.itt)
		c.tasksWG.Done()
	}
	c.mu.Unlock()
	c.free(t)
}

// run executes a task whose data-out is complete, on its own goroutine,
// unless task management has aborted it meanwhile.
func (c *conn) run(t *task) {
	if c.claim(t) {
		go c.execute(t)
	}
}

// failTask ends a task that will not run with res (CHECK CONDITION).
func (c *conn) failTask(t *task, res scsi.Result) {
	if c.claim(t) {
		go c.finishTask(t, res)
	}
}

// claim marks t running; false when it is gone (aborted) or already ran.
func (c *conn) claim(t *task) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tasks[t.itt] != t || t.running {
		return false
	}
	t.running = true
	return true
}

func (c *conn) execute(t *task) {
	sess := c.sess
	cmd := scsi.Command{CDB: t.cdb, Nexus: sess.nexus, DataOut: t.data}
	if t.read {
		cmd.ExpectedIn = t.edtl
	}
	var res scsi.Result
	if t.read && t.edtl > 0 && t.lun == 0 {
		// The data-in buffer comes out of the pool: wait for its bytes
		// rather than allocate past the bound.
		held, err := c.reserveIn(int(t.edtl))
		switch {
		case errors.Is(err, errNoBuffers):
			c.srv.fail("buffers")
			c.finishTask(t, busy())
			return
		case err != nil:
			// The connection closed: nobody will read the answer.
			t.aborted.Store(true)
			c.finishTask(t, scsi.Result{})
			return
		}
		t.inHeld = held
	}
	if t.lun != 0 {
		res = scsi.NoUnit(t.cdb)
	} else {
		if !sess.handoff.Load() && scsi.ReadsLBA0(t.cdb) && sess.handoff.CompareAndSwap(false, true) && c.srv.Hooks.Handoff != nil {
			c.srv.Hooks.Handoff(sess.info)
		}
		res = sess.t.lu.Execute(&cmd)
	}
	c.finishTask(t, res)
}

// finishTask sends a task's data-in and status, then forgets it.
func (c *conn) finishTask(t *task, res scsi.Result) {
	// The window opens before the status is queued, so that the status
	// advertises it: opened after, the last status of a burst would
	// advertise a window the target has already left behind (and, with a
	// queue depth of one, a closed one).
	opened := false
	defer func() {
		c.mu.Lock()
		if c.tasks[t.itt] == t {
			delete(c.tasks, t.itt)
		}
		c.mu.Unlock()
		if !opened {
			c.completeCmdSN(t.immediate)
		}
		close(t.done)
		c.tasksWG.Done()
	}()
	if h := c.srv.Hooks.Command; h != nil {
		h(scsi.Group(t.cdb[0]), time.Since(t.start), res.Read, res.Written)
	}
	c.free(t)
	// The data-in's bytes go back to the pool with its buffer, once the
	// writer has sent it (or could not).
	pool, inHeld := c.srv.pool(), t.inHeld
	t.inHeld = 0
	release := func() {
		res.Release()
		pool.Release(inHeld)
	}
	if t.aborted.Load() {
		release()
		return
	}
	if res.Status == scsi.StatusCheckCondition {
		c.srv.fail("check_condition")
	}
	// Residuals.
	var flags byte
	var residual uint32
	actual := int64(res.Transfer)
	switch {
	case res.Transfer >= 0:
	case t.read:
		actual = int64(len(res.Data))
	default:
		actual = int64(t.edtl)
	}
	if actual > int64(t.edtl) {
		flags, residual = pdu.FlagOverflow, uint32(actual-int64(t.edtl))
	} else if actual < int64(t.edtl) && (res.Status == scsi.StatusGood || res.Transfer >= 0) {
		flags, residual = pdu.FlagUnder, uint32(int64(t.edtl)-actual)
	}
	in := res.Data
	if !t.read {
		in = nil
	}
	if len(in) > int(t.edtl) {
		in = in[:t.edtl]
	}
	statusInData := len(in) > 0 && res.Status == scsi.StatusGood
	seg := c.p.maxSendData
	if seg <= 0 {
		seg = 8192
	}
	var dataSN uint32
	for off := 0; off < len(in); off += seg {
		end := min(off+seg, len(in))
		last := end == len(in)
		o := &outPDU{stat: 3}
		o.p.SetOpcode(pdu.OpDataIn, false)
		o.p.SetLUN(t.lun)
		o.p.SetU32(16, t.itt)
		o.p.SetU32(20, noTag)
		o.p.SetU32(36, dataSN)
		o.p.SetU32(40, uint32(off))
		o.p.Data = in[off:end]
		dataSN++
		if last && statusInData {
			c.answered(t)
			c.completeCmdSN(t.immediate)
			opened = true
			o.stat = 2
			o.p.Header[1] = pdu.FlagFinal | pdu.FlagStatus | flags
			o.p.Header[3] = res.Status
			o.p.SetU32(44, residual)
			o.release = release
		} else if last {
			o.p.Header[1] = pdu.FlagFinal
		}
		c.send(o)
	}
	if statusInData {
		return
	}
	o := &outPDU{stat: 2}
	o.p.SetOpcode(pdu.OpSCSIResponse, false)
	o.p.Header[1] = pdu.FlagFinal | flags
	o.p.Header[3] = res.Status
	o.p.SetU32(16, t.itt)
	o.p.SetU32(36, dataSN+t.r2tSN)
	o.p.SetU32(44, residual)
	if len(res.Sense) > 0 {
		d := make([]byte, 2+len(res.Sense))
		binary.BigEndian.PutUint16(d, uint16(len(res.Sense)))
		copy(d[2:], res.Sense)
		o.p.Data = d
	}
	o.release = release
	c.answered(t)
	c.completeCmdSN(t.immediate)
	opened = true
	c.send(o)
}

// answered marks t as having its status on the way. The initiator may
// reuse an ITT as soon as it has read the status, which can be before
// finishTask drops the entry; a new command then replaces an answered
// task instead of being refused as a task in progress. The entry stays
// until then so that a task-set abort still waits for the status to be
// queued ahead of its own response.
func (c *conn) answered(t *task) {
	c.mu.Lock()
	t.answered = true
	c.mu.Unlock()
}

func (c *conn) nopOut(p *pdu.PDU) error {
	if err := c.readAll(p); err != nil {
		return err
	}
	if !p.Immediate() && !c.inOrder(p) {
		return nil
	}
	c.completeCmdSN(p.Immediate()) // before the answer, which advertises it
	if p.ITT() == noTag {
		return nil // a ping answer or a one-way ping
	}
	o := &outPDU{stat: 2}
	o.p.SetOpcode(pdu.OpNOPIn, false)
	o.p.Header[1] = pdu.FlagFinal
	copy(o.p.Header[8:16], p.Header[8:16])
	o.p.SetU32(16, p.ITT())
	o.p.SetU32(20, noTag)
	if len(p.Data) > 0 {
		o.p.Data = append([]byte(nil), p.Data...)
	}
	c.send(o)
	return nil
}

// reject answers a PDU the target cannot take with a Reject carrying its
// header.
func (c *conn) reject(p *pdu.PDU, reason byte) {
	o := &outPDU{stat: 2}
	o.p.SetOpcode(pdu.OpReject, false)
	o.p.Header[1] = pdu.FlagFinal
	o.p.Header[2] = reason
	o.p.SetU32(16, noTag)
	o.p.Data = append([]byte(nil), p.Header[:]...)
	c.send(o)
}

// control handles task management, text and logout requests. Each opens
// the CmdSN window before it answers, so that its answer advertises it.
func (c *conn) control(p *pdu.PDU) error {
	switch p.Opcode() {
	case pdu.OpTaskMgmt:
		req := *p
		req.Data = nil
		c.tasksWG.Add(1)
		go func() {
			defer c.tasksWG.Done()
			c.completeCmdSN(req.Immediate())
			c.taskMgmt(&req)
		}()
		return nil
	case pdu.OpText:
		c.completeCmdSN(p.Immediate())
		c.text(p)
		return nil
	case pdu.OpLogout:
		c.completeCmdSN(p.Immediate())
		c.logout(p)
		return errLogout
	}
	return nil
}

// TMF functions and responses.
const (
	tmfAbortTask       = 1
	tmfAbortTaskSet    = 2
	tmfClearACA        = 3
	tmfClearTaskSet    = 4
	tmfLUNReset        = 5
	tmfTargetWarmReset = 6
	tmfTargetColdReset = 7
	tmfTaskReassign    = 8
	tmfComplete        = 0
	tmfNoTask          = 1
	tmfNoLUN           = 2
	tmfReassignUnsupp  = 4
	tmfNotSupported    = 5
	tmfAuthFailed      = 6
	tmfRejected        = 255
)

func (c *conn) taskMgmt(p *pdu.PDU) {
	fn := p.Flags() & 0x7f
	sess := c.sess
	resp := byte(tmfComplete)
	var after func()
	switch {
	case sess.discovery:
		resp = tmfAuthFailed
	case fn == tmfAbortTask:
		rtt := p.U32(20)
		c.mu.Lock()
		t := c.tasks[rtt]
		c.mu.Unlock()
		if t == nil || t.lun != p.LUN() {
			ref := p.U32(32)
			if snLE(sess.expCmdSN.Load(), ref) && snLE(ref, sess.maxCmdSN.Load()) {
				resp = tmfComplete
			} else {
				resp = tmfNoTask
			}
			break
		}
		c.abort([]*task{t})
	case fn == tmfAbortTaskSet || fn == tmfClearTaskSet:
		c.abort(c.tasksOf(p.LUN()))
	case fn == tmfClearACA:
		resp = tmfComplete
	case fn == tmfLUNReset:
		if p.LUN() != 0 {
			resp = tmfNoLUN
			break
		}
		c.resetTarget(false)
	case fn == tmfTargetWarmReset:
		c.resetTarget(false)
	case fn == tmfTargetColdReset:
		c.resetTarget(true)
		after = func() { go c.close() }
	case fn == tmfTaskReassign:
		resp = tmfReassignUnsupp
	default:
		resp = tmfNotSupported
	}
	o := &outPDU{stat: 2, after: after}
	o.p.SetOpcode(pdu.OpTaskMgmtResp, false)
	o.p.Header[1] = pdu.FlagFinal
	o.p.Header[2] = resp
	o.p.SetU32(16, p.ITT())
	c.send(o)
}

// tasksOf lists the connection's tasks on lun.
func (c *conn) tasksOf(lun uint64) []*task {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*task
	for _, t := range c.tasks {
		if t.lun == lun {
			out = append(out, t)
		}
	}
	return out
}

// abort ends tasks without their responses: those waiting for data-out
// are dropped, running ones finish silently; it returns when all are gone.
func (c *conn) abort(ts []*task) {
	for _, t := range ts {
		t.aborted.Store(true)
		c.mu.Lock()
		waiting := !t.running && c.tasks[t.itt] == t
		if waiting {
			delete(c.tasks, t.itt)
		}
		c.mu.Unlock()
		if waiting {
			c.free(t)
			c.completeCmdSN(t.immediate)
			close(t.done)
			c.tasksWG.Done()
			continue
		}
		<-t.done
	}
}

// resetTarget aborts every task of the target's sessions and resets the
// unit; a cold reset also ends the other sessions.
func (c *conn) resetTarget(cold bool) {
	sess := c.sess
	c.srv.mu.Lock()
	var others []*session
	var nexi []*scsi.Nexus
	for o := range sess.t.sessions {
		nexi = append(nexi, o.nexus)
		if o != sess {
			others = append(others, o)
		}
	}
	c.srv.mu.Unlock()
	c.abort(c.tasksOf(0))
	for _, o := range others {
		o.mu.Lock()
		oc := o.conn
		o.mu.Unlock()
		if oc == nil {
			continue
		}
		if cold {
			oc.close()
			continue
		}
		oc.abort(oc.tasksOf(0))
	}
	sess.t.lu.Reset(sess.nexus, nexi)
}

func (c *conn) text(p *pdu.PDU) {
	sess := c.sess
	kvs, err := pdu.ParseText(p.Data)
	var out []byte
	if err != nil {
		c.reject(p, pdu.RejectProtocolError)
		return
	}
	for _, kv := range kvs {
		switch kv.Key {
		case "SendTargets":
			var names []string
			switch {
			case sess.discovery && kv.Value == "All":
				ctx, cancel := c.ctx()
				list, err := c.srv.Resolver.Discover(ctx, sess.initiator)
				cancel()
				if err != nil {
					c.log().Warn("discovery", "initiator", sess.initiator, "error", err)
				}
				names = list
			case kv.Value == "" && !sess.discovery:
				names = []string{sess.target}
			case kv.Value != "" && kv.Value != "All":
				ctx, cancel := c.ctx()
				a, err := c.srv.Resolver.Authorize(ctx, Request{Initiator: sess.initiator, Target: kv.Value, Peer: peerAddr(c.nc)})
				cancel()
				if err == nil && a.Known && a.Allowed {
					names = []string{kv.Value}
				} else {
					c.srv.fail("discovery")
				}
			}
			addr := c.nc.LocalAddr().String()
			for _, n := range names {
				out = pdu.AppendText(out, "TargetName", n)
				out = pdu.AppendText(out, "TargetAddress", addr+",1")
			}
		case "MaxRecvDataSegmentLength":
		default:
			out = pdu.AppendText(out, kv.Key, "NotUnderstood")
		}
	}
	o := &outPDU{stat: 2}
	o.p.SetOpcode(pdu.OpTextResp, false)
	o.p.Header[1] = pdu.FlagFinal
	copy(o.p.Header[8:16], p.Header[8:16])
	o.p.SetU32(16, p.ITT())
	o.p.SetU32(20, noTag)
	o.p.Data = out
	c.send(o)
}

func (c *conn) logout(p *pdu.PDU) {
	reason := p.Flags() & 0x7f
	// Commands of the connection finish first; tasks still waiting for
	// data-out will never get it.
	c.mu.Lock()
	var waiting []*task
	for _, t := range c.tasks {
		if !t.running {
			waiting = append(waiting, t)
		}
	}
	c.mu.Unlock()
	c.abort(waiting)
	done := make(chan struct{})
	go func() {
		for {
			c.mu.Lock()
			n := 0
			for _, t := range c.tasks {
				if t.running {
					n++
				}
			}
			c.mu.Unlock()
			if n == 0 {
				close(done)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	o := &outPDU{stat: 2}
	o.p.SetOpcode(pdu.OpLogoutResp, false)
	o.p.Header[1] = pdu.FlagFinal
	if reason > 2 {
		o.p.Header[2] = 3 // cleanup failed
	}
	if reason == 2 {
		o.p.Header[2] = 2 // connection recovery not supported
	}
	o.p.SetU32(16, p.ITT())
	binary.BigEndian.PutUint16(o.p.Header[40:], 0) // Time2Wait: reconnect at once
	binary.BigEndian.PutUint16(o.p.Header[42:], 0)
	c.send(o)
	if reason == 0 && !c.sess.discovery && c.sess != nil {
		c.log().Debug("logout", "initiator", c.sess.initiator, "target", strings.ToLower(c.sess.target))
	}
}
