package scsi

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"sync"
	"sync/atomic"
)

// Backing is the storage a logical unit serves: sdk/volume.Volume
// satisfies it.
type Backing interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	BlockSize() uint32
	Flush() error
	Discard(off, length int64) error
}

// Identity names a logical unit in INQUIRY data.
type Identity struct {
	// Vendor (8 chars), Product (16) and Revision (4) of standard INQUIRY.
	Vendor, Product, Revision string
	// Name identifies the unit (the target IQN): the serial number and the
	// NAA designator are derived from it, so they are stable across
	// restarts.
	Name string
	// ReadOnly presents the unit write-protected.
	ReadOnly bool
}

// Limits the unit advertises in the Block Limits VPD page.
const (
	// MaxTransferBytes bounds one READ or WRITE.
	MaxTransferBytes = 8 << 20
	// MaxWriteSameBlocks bounds one WRITE SAME.
	MaxWriteSameBlocks = 0xffff
	// MaxUnmapBlocks and MaxUnmapDescriptors bound one UNMAP.
	MaxUnmapBlocks      = 1 << 20
	MaxUnmapDescriptors = 256
)

// Nexus is an I_T nexus: one initiator port (initiator name and ISID)
// logged in to the target. Persistent reservations and unit attentions are
// kept per nexus; the target makes one per session and compares pointers.
type Nexus struct {
	// ID is the initiator port name, "<iqn>,i,0x<isid>".
	ID string
}

// LU is one logical unit over a Backing. Its methods are safe for
// concurrent use: reads and writes run in parallel; COMPARE AND WRITE
// takes the unit for itself.
type LU struct {
	b         Backing
	id        Identity
	blockSize uint32
	blocks    uint64
	serial    string
	naa       uint64

	// caw serializes COMPARE AND WRITE against every other write.
	caw sync.RWMutex

	// reserved is set while any reservation (SPC-2 or persistent) exists
	// or a unit attention is pending, so the fast path skips the lock.
	slow atomic.Bool

	mu      sync.Mutex
	pr      prState
	reserve *Nexus // SPC-2 RESERVE(6) holder
	ua      map[*Nexus][]Sense
	dsense  bool // control mode page D_SENSE
	prevent map[*Nexus]bool
}

// NewLU makes a logical unit serving b.
func NewLU(b Backing, id Identity) *LU {
	h := fnv.New64a()
	h.Write([]byte(id.Name))
	sum := h.Sum64()
	bs := b.BlockSize()
	if bs == 0 {
		bs = 512
	}
	return &LU{
		b: b, id: id, blockSize: bs, blocks: uint64(b.Size()) / uint64(bs),
		serial: hex16(sum),
		// NAA 6 (IEEE registered extended): 6, a locally made company ID
		// and a vendor-specific identifier from the name.
		naa: 0x6<<60 | 0x0014050<<36 | (sum & 0xfffffffff),
		pr:  prState{keys: map[*Nexus]uint64{}},
		ua:  map[*Nexus][]Sense{}, prevent: map[*Nexus]bool{},
	}
}

func hex16(v uint64) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b)
}

// BlockSize returns the logical block size.
func (lu *LU) BlockSize() uint32 { return lu.blockSize }

// Blocks returns the number of logical blocks.
func (lu *LU) Blocks() uint64 { return lu.blocks }

// Command is one SCSI command as the target received it.
type Command struct {
	CDB   []byte
	Nexus *Nexus
	// DataOut holds all the data-out the initiator sent (at most the
	// expected data transfer length).
	DataOut []byte
	// ExpectedIn is the initiator's buffer for data-in (expected data
	// transfer length of a read): Execute never reads more than it,
	// except where an allocation length says otherwise.
	ExpectedIn uint32
}

// Result is what a command produced.
type Result struct {
	Status byte
	// Sense is set with StatusCheckCondition.
	Sense []byte
	// Data is the data-in; it may be longer than the initiator expects
	// (the target sends what fits and reports an overflow).
	Data []byte
	// Transfer is the number of bytes the CDB asks to move (data-in or
	// data-out), for the residual count; -1 when it equals len(Data).
	Transfer int
	// Read and Written count bytes moved to or from the backing store.
	Read, Written int64

	buf *[]byte
}

// Release returns the result's buffer to the pool; Data is invalid after.
func (r *Result) Release() {
	if r.buf != nil {
		putBuf(r.buf)
		r.buf = nil
	}
}

func (lu *LU) check(s Sense) Result {
	return Result{Status: StatusCheckCondition, Sense: s.Bytes(lu.descSense()), Transfer: -1}
}

func (lu *LU) descSense() bool {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	return lu.dsense
}

func good() Result { return Result{Status: StatusGood, Transfer: -1} }

// data returns GOOD with data cut to alloc bytes.
func data(b []byte, alloc int) Result {
	if len(b) > alloc {
		b = b[:alloc]
	}
	return Result{Status: StatusGood, Data: b, Transfer: -1}
}

// Opcodes handled.
const (
	opTestUnitReady       = 0x00
	opRequestSense        = 0x03
	opRead6               = 0x08
	opWrite6              = 0x0a
	opInquiry             = 0x12
	opModeSelect6         = 0x15
	opReserve6            = 0x16
	opRelease6            = 0x17
	opModeSense6          = 0x1a
	opStartStopUnit       = 0x1b
	opPreventAllow        = 0x1e
	opReadCapacity10      = 0x25
	opRead10              = 0x28
	opWrite10             = 0x2a
	opWriteVerify10       = 0x2e
	opVerify10            = 0x2f
	opSyncCache10         = 0x35
	opWriteSame10         = 0x41
	opUnmap               = 0x42
	opModeSelect10        = 0x55
	opModeSense10         = 0x5a
	opPRIn                = 0x5e
	opPROut               = 0x5f
	opRead16              = 0x88
	opCompareAndWrite     = 0x89
	opWrite16             = 0x8a
	opWriteVerify16       = 0x8e
	opVerify16            = 0x8f
	opSyncCache16         = 0x91
	opWriteSame16         = 0x93
	opServiceActionIn16   = 0x9e
	opReportLUNs          = 0xa0
	opMaintenanceIn       = 0xa3
	opRead12              = 0xa8
	opWrite12             = 0xaa
	opWriteVerify12       = 0xae
	opVerify12            = 0xaf
	saReadCapacity16      = 0x10
	saGetLBAStatus        = 0x12
	saReportSupportedOpcs = 0x0c
)

// Group names the metric group of an opcode: read, write, sync, unmap or
// other.
func Group(op byte) string {
	switch op {
	case opRead6, opRead10, opRead12, opRead16:
		return "read"
	case opWrite6, opWrite10, opWrite12, opWrite16, opWriteVerify10, opWriteVerify12, opWriteVerify16, opCompareAndWrite, opWriteSame10, opWriteSame16:
		return "write"
	case opSyncCache10, opSyncCache16:
		return "sync"
	case opUnmap:
		return "unmap"
	}
	return "other"
}

// ReadsLBA0 reports whether cdb is a READ that starts at LBA 0.
func ReadsLBA0(cdb []byte) bool {
	switch {
	case len(cdb) >= 6 && cdb[0] == opRead6:
		return cdb[1]&0x1f == 0 && cdb[2] == 0 && cdb[3] == 0
	case len(cdb) >= 10 && cdb[0] == opRead10, len(cdb) >= 12 && cdb[0] == opRead12:
		return binary.BigEndian.Uint32(cdb[2:]) == 0
	case len(cdb) >= 16 && cdb[0] == opRead16:
		return binary.BigEndian.Uint64(cdb[2:]) == 0
	}
	return false
}

// cdbLen is the CDB length of an opcode's group.
func cdbLen(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 0
}

// Execute runs one command addressed to this unit.
func (lu *LU) Execute(c *Command) Result {
	cdb := c.CDB
	if len(cdb) == 0 {
		return lu.check(SenseInvalidOpcode)
	}
	op := cdb[0]
	if n := cdbLen(op); n == 0 || len(cdb) < n {
		return lu.check(SenseInvalidOpcode)
	}
	if lu.slow.Load() {
		if r, stop := lu.gate(c); stop {
			return r
		}
	}
	switch op {
	case opTestUnitReady:
		return good()
	case opRequestSense:
		return lu.requestSense(c)
	case opInquiry:
		return lu.inquiry(c)
	case opReportLUNs:
		return ReportLUNs(cdb)
	case opReadCapacity10:
		return lu.readCapacity10(cdb)
	case opServiceActionIn16:
		switch cdb[1] & 0x1f {
		case saReadCapacity16:
			return lu.readCapacity16(cdb)
		case saGetLBAStatus:
			return lu.getLBAStatus(cdb)
		}
		return lu.check(fieldCDB(1, 4))
	case opMaintenanceIn:
		if cdb[1]&0x1f == saReportSupportedOpcs {
			return lu.reportOpcodes(cdb)
		}
		return lu.check(fieldCDB(1, 4))
	case opRead6, opRead10, opRead12, opRead16:
		return lu.read(c)
	case opWrite6, opWrite10, opWrite12, opWrite16, opWriteVerify10, opWriteVerify12, opWriteVerify16:
		return lu.write(c)
	case opVerify10, opVerify12, opVerify16:
		return lu.verify(c)
	case opCompareAndWrite:
		return lu.compareAndWrite(c)
	case opWriteSame10, opWriteSame16:
		return lu.writeSame(c)
	case opUnmap:
		return lu.unmap(c)
	case opSyncCache10, opSyncCache16:
		return lu.syncCache(cdb)
	case opModeSense6, opModeSense10:
		return lu.modeSense(cdb)
	case opModeSelect6, opModeSelect10:
		return lu.modeSelect(c)
	case opStartStopUnit:
		return lu.startStop(cdb)
	case opPreventAllow:
		return lu.preventAllow(c)
	case opReserve6:
		return lu.reserve6(c)
	case opRelease6:
		return lu.release6(c)
	case opPRIn:
		return lu.prIn(c)
	case opPROut:
		return lu.prOut(c)
	}
	return lu.check(SenseInvalidOpcode)
}

// gate applies unit attentions and reservations before a command runs.
func (lu *LU) gate(c *Command) (Result, bool) {
	op := c.CDB[0]
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if q := lu.ua[c.Nexus]; len(q) > 0 && op != opInquiry && op != opReportLUNs && op != opRequestSense {
		s := q[0]
		lu.ua[c.Nexus] = q[1:]
		lu.updateSlowLocked()
		return Result{Status: StatusCheckCondition, Sense: s.Bytes(lu.dsense), Transfer: -1}, true
	}
	if lu.conflictLocked(c) {
		return Result{Status: StatusReservationConflict, Transfer: -1}, true
	}
	return Result{}, false
}

func (lu *LU) updateSlowLocked() {
	slow := lu.reserve != nil || lu.pr.holder != nil || lu.pr.allRegs || len(lu.pr.keys) > 0
	for _, q := range lu.ua {
		if len(q) > 0 {
			slow = true
		}
	}
	lu.slow.Store(slow)
}

// addUALocked queues a unit attention for every nexus in to.
func (lu *LU) addUALocked(s Sense, to ...*Nexus) {
	for _, n := range to {
		if n == nil {
			continue
		}
		q := lu.ua[n]
		if len(q) < 8 {
			lu.ua[n] = append(q, s)
		}
	}
	lu.updateSlowLocked()
}

// Reset is a LUN or target reset: SPC-2 reservations and PREVENT states
// go, every other nexus gets a unit attention. Persistent reservations
// stay.
func (lu *LU) Reset(from *Nexus, others []*Nexus) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	lu.reserve = nil
	lu.prevent = map[*Nexus]bool{}
	for _, n := range others {
		if n != from {
			lu.addUALocked(SenseResetOccurred, n)
		}
	}
	lu.updateSlowLocked()
}

// Gone forgets a nexus whose session ended: its SPC-2 reservation, its
// PREVENT and its unit attentions. Persistent registrations survive.
func (lu *LU) Gone(n *Nexus) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.reserve == n {
		lu.reserve = nil
	}
	delete(lu.prevent, n)
	delete(lu.ua, n)
	lu.updateSlowLocked()
}

// Join records a new nexus; persistent registrations of an earlier nexus
// with the same ID carry over to it.
func (lu *LU) Join(n *Nexus) {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	for old, key := range lu.pr.keys {
		if old != n && old.ID == n.ID {
			delete(lu.pr.keys, old)
			lu.pr.keys[n] = key
			if lu.pr.holder == old {
				lu.pr.holder = n
			}
		}
	}
	lu.updateSlowLocked()
}

// lba and transfer length of the read/write/verify family.
func rwArgs(cdb []byte) (lba uint64, n uint32) {
	switch cdb[0] >> 5 {
	case 0:
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		n = uint32(cdb[4])
		if n == 0 && (cdb[0] == opRead6 || cdb[0] == opWrite6) {
			n = 256
		}
	case 1, 2:
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		n = uint32(binary.BigEndian.Uint16(cdb[7:]))
	case 5:
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		n = binary.BigEndian.Uint32(cdb[6:])
	case 4:
		lba = binary.BigEndian.Uint64(cdb[2:])
		n = binary.BigEndian.Uint32(cdb[10:])
	}
	return lba, n
}

// inRange checks lba..lba+n against the unit.
func (lu *LU) inRange(lba uint64, n uint64) bool {
	return lba <= lu.blocks && n <= lu.blocks-lba
}

func (lu *LU) read(c *Command) Result {
	cdb := c.CDB
	lba, n := rwArgs(cdb)
	if cdb[0] != opRead6 && cdb[1]>>5 != 0 {
		return lu.check(fieldCDB(1, 7)) // RDPROTECT: no protection information
	}
	if !lu.inRange(lba, uint64(n)) {
		return lu.check(SenseLBAOutOfRange)
	}
	if uint64(n)*uint64(lu.blockSize) > MaxTransferBytes {
		return lu.check(fieldCDB(cdbLenField(cdb[0]), -1))
	}
	total := int(n) * int(lu.blockSize)
	if total == 0 {
		return good()
	}
	// Read only what the initiator will take; the residual says the rest.
	want := min(total, int(c.ExpectedIn))
	buf := getBuf(want)
	b := (*buf)[:want]
	if want > 0 {
		if _, err := lu.b.ReadAt(b, int64(lba)*int64(lu.blockSize)); err != nil && !(errors.Is(err, io.EOF)) {
			putBuf(buf)
			return lu.check(SenseReadError)
		}
	}
	return Result{Status: StatusGood, Data: b, Transfer: total, Read: int64(want), buf: buf}
}

// cdbLenField is the CDB byte holding a transfer length.
func cdbLenField(op byte) int {
	switch op >> 5 {
	case 0:
		return 4
	case 1, 2:
		return 7
	case 5:
		return 6
	}
	return 10
}

func (lu *LU) writable() bool { return !lu.id.ReadOnly }

func (lu *LU) write(c *Command) Result {
	cdb := c.CDB
	lba, n := rwArgs(cdb)
	if cdb[0] != opWrite6 && cdb[1]>>5 != 0 {
		return lu.check(fieldCDB(1, 7)) // WRPROTECT
	}
	if !lu.inRange(lba, uint64(n)) {
		return lu.check(SenseLBAOutOfRange)
	}
	if !lu.writable() {
		return lu.check(SenseWriteProtected)
	}
	if uint64(n)*uint64(lu.blockSize) > MaxTransferBytes {
		return lu.check(fieldCDB(cdbLenField(cdb[0]), -1))
	}
	total := int(n) * int(lu.blockSize)
	if total == 0 {
		return good()
	}
	// The initiator may send less than the CDB says (its expected data
	// transfer length is shorter): write what came, report the overflow.
	wrote := min(total, len(c.DataOut))
	if wrote == 0 {
		return Result{Status: StatusGood, Transfer: total}
	}
	lu.caw.RLock()
	_, err := lu.b.WriteAt(c.DataOut[:wrote], int64(lba)*int64(lu.blockSize))
	lu.caw.RUnlock()
	if err != nil {
		return lu.check(SenseWriteError)
	}
	fua := cdb[0] != opWrite6 && cdb[1]&0x08 != 0
	if fua || cdb[0] == opWriteVerify10 || cdb[0] == opWriteVerify12 || cdb[0] == opWriteVerify16 {
		if err := lu.b.Flush(); err != nil {
			return lu.check(SenseWriteError)
		}
	}
	return Result{Status: StatusGood, Transfer: total, Written: int64(wrote)}
}

func (lu *LU) verify(c *Command) Result {
	cdb := c.CDB
	lba, n := rwArgs(cdb)
	if cdb[1]>>5 != 0 {
		return lu.check(fieldCDB(1, 7)) // VRPROTECT
	}
	bytchk := (cdb[1] >> 1) & 3
	if bytchk == 2 {
		return lu.check(fieldCDB(1, 2))
	}
	if !lu.inRange(lba, uint64(n)) {
		return lu.check(SenseLBAOutOfRange)
	}
	if bytchk == 0 || n == 0 {
		return good()
	}
	if uint64(n)*uint64(lu.blockSize) > MaxTransferBytes {
		return lu.check(fieldCDB(cdbLenField(cdb[0]), -1))
	}
	total := int(n) * int(lu.blockSize)
	want := total
	if bytchk == 3 {
		want = int(lu.blockSize)
	}
	if len(c.DataOut) < want {
		r := lu.check(SenseInvalidFieldIU)
		r.Transfer = want
		return r
	}
	buf := getBuf(total)
	defer putBuf(buf)
	disk := (*buf)[:total]
	if _, err := lu.b.ReadAt(disk, int64(lba)*int64(lu.blockSize)); err != nil {
		return lu.check(SenseReadError)
	}
	for i := 0; i < total; i++ {
		var w byte
		if bytchk == 3 {
			w = c.DataOut[i%int(lu.blockSize)]
		} else {
			w = c.DataOut[i]
		}
		if disk[i] != w {
			s := SenseMiscompare
			s.HasInfo, s.Info = true, uint64(i)
			r := lu.check(s)
			r.Transfer = want
			return r
		}
	}
	return Result{Status: StatusGood, Transfer: want, Read: int64(total)}
}

func (lu *LU) compareAndWrite(c *Command) Result {
	cdb := c.CDB
	lba := binary.BigEndian.Uint64(cdb[2:])
	n := uint32(cdb[13])
	if cdb[1]>>5 != 0 {
		return lu.check(fieldCDB(1, 7))
	}
	if n > 1 {
		return lu.check(fieldCDB(13, -1))
	}
	if !lu.inRange(lba, uint64(n)) {
		return lu.check(SenseLBAOutOfRange)
	}
	if !lu.writable() {
		return lu.check(SenseWriteProtected)
	}
	if n == 0 {
		if len(c.DataOut) > 0 {
			return lu.check(fieldCDB(13, -1))
		}
		return good()
	}
	size := int(n) * int(lu.blockSize)
	if len(c.DataOut) != 2*size {
		r := lu.check(SenseInvalidFieldIU)
		r.Transfer = 2 * size
		return r
	}
	off := int64(lba) * int64(lu.blockSize)
	lu.caw.Lock()
	defer lu.caw.Unlock()
	cur := make([]byte, size)
	if _, err := lu.b.ReadAt(cur, off); err != nil {
		return lu.check(SenseReadError)
	}
	for i := range cur {
		if cur[i] != c.DataOut[i] {
			s := SenseMiscompare
			s.HasInfo, s.Info = true, uint64(i)
			return lu.check(s)
		}
	}
	if _, err := lu.b.WriteAt(c.DataOut[size:], off); err != nil {
		return lu.check(SenseWriteError)
	}
	if cdb[1]&0x08 != 0 {
		if err := lu.b.Flush(); err != nil {
			return lu.check(SenseWriteError)
		}
	}
	return Result{Status: StatusGood, Transfer: 2 * size, Read: int64(size), Written: int64(size)}
}

func (lu *LU) writeSame(c *Command) Result {
	cdb := c.CDB
	var lba uint64
	var n uint32
	if cdb[0] == opWriteSame10 {
		lba, n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint32(binary.BigEndian.Uint16(cdb[7:]))
	} else {
		lba, n = binary.BigEndian.Uint64(cdb[2:]), binary.BigEndian.Uint32(cdb[10:])
	}
	if cdb[1]>>5 != 0 {
		return lu.check(fieldCDB(1, 7))
	}
	unmap := cdb[1]&0x08 != 0
	anchor := cdb[1]&0x10 != 0
	ndob := cdb[0] == opWriteSame16 && cdb[1]&0x01 != 0
	if anchor {
		return lu.check(fieldCDB(1, 4))
	}
	if !lu.inRange(lba, uint64(n)) {
		return lu.check(SenseLBAOutOfRange)
	}
	if n == 0 {
		// WSNZ is set in the Block Limits page: zero blocks is refused.
		return lu.check(fieldCDB(cdbLenField(cdb[0]), -1))
	}
	if n > MaxWriteSameBlocks {
		return lu.check(fieldCDB(cdbLenField(cdb[0]), -1))
	}
	if !lu.writable() {
		return lu.check(SenseWriteProtected)
	}
	bs := int(lu.blockSize)
	var block []byte
	if !ndob {
		if len(c.DataOut) < bs {
			r := lu.check(SenseInvalidFieldIU)
			r.Transfer = bs
			return r
		}
		block = c.DataOut[:bs]
	}
	off, length := int64(lba)*int64(bs), int64(n)*int64(bs)
	zero := ndob || allZero(block)
	lu.caw.RLock()
	defer lu.caw.RUnlock()
	if zero && unmap {
		if err := lu.b.Discard(off, length); err != nil {
			return lu.check(SenseWriteError)
		}
		return Result{Status: StatusGood, Transfer: len(block)}
	}
	chunk := min(length, 1<<20)
	buf := getBuf(int(chunk))
	defer putBuf(buf)
	pat := (*buf)[:chunk]
	if zero {
		clear(pat)
	} else {
		for i := 0; i < len(pat); i += bs {
			copy(pat[i:], block)
		}
	}
	for length > 0 {
		w := min(length, chunk)
		if _, err := lu.b.WriteAt(pat[:w], off); err != nil {
			return lu.check(SenseWriteError)
		}
		off += w
		length -= w
	}
	return Result{Status: StatusGood, Transfer: len(block), Written: int64(n) * int64(bs)}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (lu *LU) unmap(c *Command) Result {
	cdb := c.CDB
	if cdb[1]&0x01 != 0 {
		return lu.check(fieldCDB(1, 0)) // ANCHOR
	}
	plen := int(binary.BigEndian.Uint16(cdb[7:]))
	if plen == 0 {
		return good()
	}
	p := c.DataOut
	if len(p) > plen {
		p = p[:plen]
	}
	if len(p) < 8 {
		return lu.check(SenseParamListLength)
	}
	if !lu.writable() {
		return lu.check(SenseWriteProtected)
	}
	dlen := int(binary.BigEndian.Uint16(p[2:]))
	descs := p[8:]
	if dlen < len(descs) {
		descs = descs[:dlen]
	}
	if len(descs)%16 != 0 {
		return lu.check(SenseParamListLength)
	}
	if len(descs)/16 > MaxUnmapDescriptors {
		return lu.check(fieldCDB(7, -1))
	}
	for i := 0; i+16 <= len(descs); i += 16 {
		lba := binary.BigEndian.Uint64(descs[i:])
		n := uint64(binary.BigEndian.Uint32(descs[i+8:]))
		if !lu.inRange(lba, n) {
			return lu.check(SenseLBAOutOfRange)
		}
		if n > MaxUnmapBlocks {
			return lu.check(SenseInvalidFieldParam)
		}
	}
	lu.caw.RLock()
	defer lu.caw.RUnlock()
	for i := 0; i+16 <= len(descs); i += 16 {
		lba := binary.BigEndian.Uint64(descs[i:])
		n := uint64(binary.BigEndian.Uint32(descs[i+8:]))
		if n == 0 {
			continue
		}
		if err := lu.b.Discard(int64(lba)*int64(lu.blockSize), int64(n)*int64(lu.blockSize)); err != nil {
			return lu.check(SenseWriteError)
		}
	}
	return good()
}

func (lu *LU) syncCache(cdb []byte) Result {
	var lba, n uint64
	if cdb[0] == opSyncCache10 {
		lba, n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	} else {
		lba, n = binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
	}
	if !lu.inRange(lba, n) {
		return lu.check(SenseLBAOutOfRange)
	}
	if err := lu.b.Flush(); err != nil {
		return lu.check(SenseWriteError)
	}
	return good()
}

func (lu *LU) readCapacity10(cdb []byte) Result {
	b := make([]byte, 8)
	last := lu.blocks - 1
	if last > 0xffffffff {
		last = 0xffffffff
	}
	binary.BigEndian.PutUint32(b, uint32(last))
	binary.BigEndian.PutUint32(b[4:], lu.blockSize)
	return data(b, 8)
}

func (lu *LU) readCapacity16(cdb []byte) Result {
	alloc := int(binary.BigEndian.Uint32(cdb[10:]))
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b, lu.blocks-1)
	binary.BigEndian.PutUint32(b[8:], lu.blockSize)
	// LBPME: thin provisioned (UNMAP frees space); LBPRZ: unmapped
	// blocks read as zeros.
	b[14] = 0x80 | 0x40
	return data(b, alloc)
}

// getLBAStatus reports every block as mapped: the volume does not say
// which ranges are holes.
func (lu *LU) getLBAStatus(cdb []byte) Result {
	lba := binary.BigEndian.Uint64(cdb[2:])
	alloc := int(binary.BigEndian.Uint32(cdb[10:]))
	if lba >= lu.blocks {
		return lu.check(SenseLBAOutOfRange)
	}
	b := make([]byte, 24)
	binary.BigEndian.PutUint32(b, 20)
	binary.BigEndian.PutUint64(b[8:], lba)
	n := lu.blocks - lba
	if n > 0xffffffff {
		n = 0xffffffff
	}
	binary.BigEndian.PutUint32(b[16:], uint32(n))
	return data(b, alloc)
}

func (lu *LU) startStop(cdb []byte) Result {
	// Power conditions and start/stop are accepted; the unit is always
	// ready. Eject (LOEJ without START) of a fixed disk is refused.
	if cdb[4]&0x02 != 0 && cdb[4]&0x01 == 0 && cdb[4]>>4 == 0 {
		return lu.check(fieldCDB(4, 1))
	}
	return good()
}

func (lu *LU) preventAllow(c *Command) Result {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if c.CDB[4]&0x03 != 0 {
		lu.prevent[c.Nexus] = true
	} else {
		delete(lu.prevent, c.Nexus)
	}
	return good()
}

func (lu *LU) requestSense(c *Command) Result {
	alloc := int(c.CDB[4])
	desc := c.CDB[1]&0x01 != 0
	lu.mu.Lock()
	var s Sense
	if q := lu.ua[c.Nexus]; len(q) > 0 {
		s = q[0]
		lu.ua[c.Nexus] = q[1:]
		lu.updateSlowLocked()
	}
	lu.mu.Unlock()
	return data(s.Bytes(desc), alloc)
}

// ReportLUNs answers REPORT LUNS: LUN 0 only.
func ReportLUNs(cdb []byte) Result {
	if len(cdb) < 12 {
		return Result{Status: StatusCheckCondition, Sense: SenseInvalidOpcode.Bytes(false), Transfer: -1}
	}
	alloc := int(binary.BigEndian.Uint32(cdb[6:]))
	if sel := cdb[2]; sel > 2 && sel != 0x10 && sel != 0x11 && sel != 0x12 {
		return Result{Status: StatusCheckCondition, Sense: fieldCDB(2, -1).Bytes(false), Transfer: -1}
	}
	if alloc < 16 {
		return Result{Status: StatusCheckCondition, Sense: fieldCDB(6, -1).Bytes(false), Transfer: -1}
	}
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b, 8)
	return data(b, alloc)
}

// NoUnit answers a command to a LUN that does not exist.
func NoUnit(cdb []byte) Result {
	if len(cdb) == 0 {
		return Result{Status: StatusCheckCondition, Sense: SenseInvalidOpcode.Bytes(false), Transfer: -1}
	}
	switch cdb[0] {
	case opReportLUNs:
		return ReportLUNs(cdb)
	case opInquiry:
		if len(cdb) < 6 {
			break
		}
		alloc := int(binary.BigEndian.Uint16(cdb[3:]))
		if cdb[1]&0x01 != 0 {
			return Result{Status: StatusCheckCondition, Sense: SenseLUNotSupported.Bytes(false), Transfer: -1}
		}
		b := make([]byte, 36)
		b[0] = 0x7f // peripheral qualifier 3: no unit here
		b[2], b[3], b[4] = 0x06, 0x02, 31
		return data(b, alloc)
	case opRequestSense:
		if len(cdb) < 6 {
			break
		}
		return data(SenseLUNotSupported.Bytes(cdb[1]&1 != 0), int(cdb[4]))
	}
	return Result{Status: StatusCheckCondition, Sense: SenseLUNotSupported.Bytes(false), Transfer: -1}
}
