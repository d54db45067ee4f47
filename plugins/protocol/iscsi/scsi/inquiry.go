package scsi

import (
	"encoding/binary"
	"sync"
)

func pad(s string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
	return b
}

func (lu *LU) inquiry(c *Command) Result {
	cdb := c.CDB
	alloc := int(binary.BigEndian.Uint16(cdb[3:]))
	evpd := cdb[1]&0x01 != 0
	if cdb[1]&0x02 != 0 { // CMDDT, obsolete
		return lu.check(fieldCDB(1, 1))
	}
	if !evpd {
		if cdb[2] != 0 {
			return lu.check(fieldCDB(2, -1))
		}
		return data(lu.standardInquiry(), alloc)
	}
	var page []byte
	switch cdb[2] {
	case 0x00:
		page = vpd(0x00, []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2})
	case 0x80:
		page = vpd(0x80, []byte(lu.serial))
	case 0x83:
		page = vpd(0x83, lu.designators())
	case 0xb0:
		page = vpd(0xb0, lu.blockLimits())
	case 0xb1:
		p := make([]byte, 60)
		binary.BigEndian.PutUint16(p, 1) // non-rotating medium
		page = vpd(0xb1, p)
	case 0xb2:
		p := make([]byte, 4)
		// LBPU (UNMAP), LBPWS (WRITE SAME(16) unmap), LBPWS10, LBPRZ.
		p[1] = 0x80 | 0x40 | 0x20 | 0x04
		p[2] = 0x02 // provisioning type: thin
		page = vpd(0xb2, p)
	default:
		return lu.check(fieldCDB(2, -1))
	}
	return data(page, alloc)
}

// vpd wraps a page's payload in its 4-byte header.
func vpd(code byte, payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	b[1] = code
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	copy(b[4:], payload)
	return b
}

func (lu *LU) standardInquiry() []byte {
	b := make([]byte, 66)
	b[0] = 0x00 // direct access block device, connected
	b[2] = 0x06 // SPC-4
	b[3] = 0x02 // response data format 2, HISUP
	b[3] |= 0x10
	b[4] = byte(len(b) - 5)
	b[5] = 0x00 // 3PC, TPGS, PROTECT: none
	b[6] = 0x00
	b[7] = 0x02 // CMDQUE
	copy(b[8:], pad(lu.id.Vendor, 8))
	copy(b[16:], pad(lu.id.Product, 16))
	copy(b[32:], pad(lu.id.Revision, 4))
	// Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
	for i, v := range []uint16{0x00a0, 0x0960, 0x0460, 0x04c0} {
		binary.BigEndian.PutUint16(b[58+2*i:], v)
	}
	return b
}

func (lu *LU) designators() []byte {
	var p []byte
	// NAA, binary, associated with the logical unit.
	naa := make([]byte, 12)
	naa[0], naa[1], naa[3] = 0x01, 0x03, 8
	binary.BigEndian.PutUint64(naa[4:], lu.naa)
	p = append(p, naa...)
	// T10 vendor ID, ASCII.
	t10 := append(pad(lu.id.Vendor, 8), []byte(lu.serial)...)
	p = append(p, 0x02, 0x01, 0x00, byte(len(t10)))
	p = append(p, t10...)
	// SCSI name string of the target device (the target IQN), UTF-8,
	// NUL-terminated and padded to a multiple of four.
	name := []byte(lu.id.Name)
	name = append(name, 0)
	for len(name)%4 != 0 {
		name = append(name, 0)
	}
	if len(name) <= 252 {
		p = append(p, 0x53, 0x28|0x80, 0x00, byte(len(name)))
		p = append(p, name...)
	}
	// Relative target port 1, associated with the target port.
	p = append(p, 0x61, 0x94, 0x00, 4, 0, 0, 0, 1)
	return p
}

func (lu *LU) blockLimits() []byte {
	p := make([]byte, 60)
	p[0] = 0x01                          // WSNZ: WRITE SAME of zero blocks is refused
	p[1] = 1                             // maximum COMPARE AND WRITE length
	binary.BigEndian.PutUint16(p[2:], 8) // optimal transfer length granularity
	maxXfer := uint32(MaxTransferBytes / lu.blockSize)
	binary.BigEndian.PutUint32(p[4:], maxXfer) // maximum transfer length
	binary.BigEndian.PutUint32(p[8:], maxXfer) // optimal transfer length
	binary.BigEndian.PutUint32(p[16:], MaxUnmapBlocks)
	binary.BigEndian.PutUint32(p[20:], MaxUnmapDescriptors)
	binary.BigEndian.PutUint32(p[24:], 4096/lu.blockSize) // optimal unmap granularity
	binary.BigEndian.PutUint64(p[32:], MaxWriteSameBlocks)
	return p
}

// Mode pages.
func (lu *LU) modeSense(cdb []byte) Result {
	six := cdb[0] == opModeSense6
	dbd := cdb[1]&0x08 != 0
	llbaa := !six && cdb[1]&0x10 != 0
	pc := cdb[2] >> 6
	code := cdb[2] & 0x3f
	sub := cdb[3]
	var alloc int
	if six {
		alloc = int(cdb[4])
	} else {
		alloc = int(binary.BigEndian.Uint16(cdb[7:]))
	}
	if pc == 3 {
		return lu.check(Sense{Key: KeyIllegalRequest, ASC: 0x39}) // saving parameters not supported
	}
	var pages []byte
	add := func(c byte) {
		pages = append(pages, lu.modePage(c, pc == 1)...)
	}
	switch {
	case code == 0x3f && (sub == 0 || sub == 0xff):
		for _, c := range []byte{0x01, 0x08, 0x0a, 0x1c} {
			add(c)
		}
	case sub != 0:
		return lu.check(fieldCDB(3, -1))
	case code == 0x01 || code == 0x08 || code == 0x0a || code == 0x1c:
		add(code)
	default:
		return lu.check(fieldCDB(2, 5))
	}
	var bd []byte
	if !dbd {
		if llbaa {
			bd = make([]byte, 16)
			binary.BigEndian.PutUint64(bd, lu.blocks)
			binary.BigEndian.PutUint32(bd[12:], lu.blockSize)
		} else {
			bd = make([]byte, 8)
			n := lu.blocks
			if n > 0xffffffff {
				n = 0xffffffff
			}
			binary.BigEndian.PutUint32(bd, uint32(n))
			binary.BigEndian.PutUint32(bd[4:], lu.blockSize&0xffffff)
		}
	}
	var wp byte
	if lu.id.ReadOnly {
		wp = 0x80
	}
	var b []byte
	if six {
		b = make([]byte, 4, 4+len(bd)+len(pages))
		b[2] = wp | 0x10 // DPOFUA
		b[3] = byte(len(bd))
		b = append(b, bd...)
		b = append(b, pages...)
		b[0] = byte(len(b) - 1)
	} else {
		b = make([]byte, 8, 8+len(bd)+len(pages))
		b[3] = wp | 0x10
		if llbaa && len(bd) > 0 {
			b[4] = 0x01
		}
		binary.BigEndian.PutUint16(b[6:], uint16(len(bd)))
		b = append(b, bd...)
		b = append(b, pages...)
		binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	}
	return data(b, alloc)
}

// modePage returns a page's current values, or its changeable mask.
func (lu *LU) modePage(code byte, changeable bool) []byte {
	var p []byte
	switch code {
	case 0x01: // read-write error recovery
		p = make([]byte, 12)
		if !changeable {
			p[2] = 0x80 // AWRE
		}
	case 0x08: // caching: WCE, writes reach the page cache first
		p = make([]byte, 20)
		if !changeable {
			p[2] = 0x04
		}
	case 0x0a: // control
		p = make([]byte, 12)
		if changeable {
			p[2] = 0x04 // D_SENSE may be changed
		} else {
			lu.mu.Lock()
			if lu.dsense {
				p[2] |= 0x04
			}
			lu.mu.Unlock()
			p[3] = 0x10 // unrestricted reordering allowed
			binary.BigEndian.PutUint16(p[10:], 0xffff)
		}
	case 0x1c: // informational exceptions control
		p = make([]byte, 12)
	default:
		return nil
	}
	p[0] = code
	p[1] = byte(len(p) - 2)
	return p
}

// modeSelect accepts a control page that changes D_SENSE; other pages must
// match their current values' length.
func (lu *LU) modeSelect(c *Command) Result {
	cdb := c.CDB
	six := cdb[0] == opModeSelect6
	var plen int
	if six {
		plen = int(cdb[4])
	} else {
		plen = int(binary.BigEndian.Uint16(cdb[7:]))
	}
	if cdb[1]&0x01 != 0 { // SP: saving pages is not supported
		return lu.check(fieldCDB(1, 0))
	}
	if plen == 0 {
		return good()
	}
	p := c.DataOut
	if len(p) < plen {
		return lu.check(SenseParamListLength)
	}
	p = p[:plen]
	var hdr, bdl int
	if six {
		if len(p) < 4 {
			return lu.check(SenseParamListLength)
		}
		hdr, bdl = 4, int(p[3])
	} else {
		if len(p) < 8 {
			return lu.check(SenseParamListLength)
		}
		hdr, bdl = 8, int(binary.BigEndian.Uint16(p[6:]))
	}
	if hdr+bdl > len(p) {
		return lu.check(SenseParamListLength)
	}
	pages := p[hdr+bdl:]
	for len(pages) > 0 {
		if len(pages) < 2 {
			return lu.check(SenseParamListLength)
		}
		code := pages[0] & 0x3f
		if pages[0]&0x40 != 0 {
			return lu.check(SenseInvalidFieldParam)
		}
		n := int(pages[1]) + 2
		if n > len(pages) {
			return lu.check(SenseParamListLength)
		}
		cur := lu.modePage(code, false)
		if cur == nil || n != len(cur) {
			return lu.check(SenseInvalidFieldParam)
		}
		if code == 0x0a {
			lu.mu.Lock()
			lu.dsense = pages[2]&0x04 != 0
			lu.mu.Unlock()
		}
		pages = pages[n:]
	}
	return good()
}

// Supported operation codes, for REPORT SUPPORTED OPERATION CODES: opcode,
// service action (sa true when it has one) and the CDB usage map.
type opInfo struct {
	op    byte
	sa    uint16
	hasSA bool
	usage []byte
}

var (
	opsOnce sync.Once
	ops     []opInfo
)

func supportedOps() []opInfo {
	opsOnce.Do(func() {
		u := func(op byte, mask ...byte) opInfo { return opInfo{op: op, usage: append([]byte{op}, mask...)} }
		us := func(op byte, sa uint16, mask ...byte) opInfo {
			return opInfo{op: op, sa: sa, hasSA: true, usage: append([]byte{op}, mask...)}
		}
		ops = []opInfo{
			u(opTestUnitReady, 0, 0, 0, 0, 0x07),
			u(opRequestSense, 0x01, 0, 0, 0xff, 0x07),
			u(opRead6, 0x1f, 0xff, 0xff, 0xff, 0x07),
			u(opWrite6, 0x1f, 0xff, 0xff, 0xff, 0x07),
			u(opInquiry, 0x01, 0xff, 0xff, 0xff, 0x07),
			u(opModeSelect6, 0x11, 0, 0, 0xff, 0x07),
			u(opReserve6, 0, 0, 0, 0, 0x07),
			u(opRelease6, 0, 0, 0, 0, 0x07),
			u(opModeSense6, 0x08, 0xff, 0xff, 0xff, 0x07),
			u(opStartStopUnit, 0x01, 0, 0x0f, 0xf7, 0x07),
			u(opPreventAllow, 0, 0, 0, 0x03, 0x07),
			u(opReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0x07),
			u(opRead10, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07),
			u(opWrite10, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07),
			u(opWriteVerify10, 0xf2, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07),
			u(opVerify10, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07),
			u(opSyncCache10, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07),
			u(opWriteSame10, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07),
			u(opUnmap, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0x07),
			u(opModeSelect10, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07),
			u(opModeSense10, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07),
			us(opPRIn, 0, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07),
			us(opPRIn, 1, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07),
			us(opPRIn, 2, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07),
			us(opPRIn, 3, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07),
			us(opPROut, 0, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07),
			us(opPROut, 1, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07),
			us(opPROut, 2, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07),
			us(opPROut, 3, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07),
			us(opPROut, 4, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07),
			us(opPROut, 5, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07),
			us(opPROut, 6, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07),
			u(opRead16, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opCompareAndWrite, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0x07),
			u(opWrite16, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opWriteVerify16, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opVerify16, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opSyncCache16, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opWriteSame16, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			us(opServiceActionIn16, saReadCapacity16, saReadCapacity16, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07),
			us(opServiceActionIn16, saGetLBAStatus, saGetLBAStatus, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07),
			u(opReportLUNs, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07),
			us(opMaintenanceIn, saReportSupportedOpcs, saReportSupportedOpcs, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07),
			u(opRead12, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opWrite12, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opWriteVerify12, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
			u(opVerify12, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07),
		}
	})
	return ops
}

func (lu *LU) reportOpcodes(cdb []byte) Result {
	rctd := cdb[2]&0x80 != 0
	opts := cdb[2] & 0x07
	reqOp := cdb[3]
	reqSA := binary.BigEndian.Uint16(cdb[4:])
	alloc := int(binary.BigEndian.Uint32(cdb[6:]))
	timeout := func() []byte {
		t := make([]byte, 12)
		binary.BigEndian.PutUint16(t, 0x0a)
		return t
	}
	switch opts {
	case 0:
		b := make([]byte, 4)
		for _, o := range supportedOps() {
			d := make([]byte, 8)
			d[0] = o.op
			binary.BigEndian.PutUint16(d[2:], o.sa)
			if o.hasSA {
				d[5] |= 0x01
			}
			if rctd {
				d[5] |= 0x02
			}
			binary.BigEndian.PutUint16(d[6:], uint16(len(o.usage)))
			b = append(b, d...)
			if rctd {
				b = append(b, timeout()...)
			}
		}
		binary.BigEndian.PutUint32(b, uint32(len(b)-4))
		return data(b, alloc)
	case 1, 2, 3:
		var found *opInfo
		anySA := false
		for i, o := range supportedOps() {
			if o.op != reqOp {
				continue
			}
			if o.hasSA {
				anySA = true
			}
			if (opts == 1 && !o.hasSA) || (opts >= 2 && o.hasSA && o.sa == reqSA) || (opts == 3 && !o.hasSA) {
				found = &supportedOps()[i]
				break
			}
		}
		if opts == 1 && anySA {
			return lu.check(fieldCDB(2, 2))
		}
		if opts == 2 && found == nil && !anySA && opKnown(reqOp) {
			return lu.check(fieldCDB(2, 2))
		}
		b := make([]byte, 4)
		if found == nil {
			b[1] = 0x01 // not supported
		} else {
			b[1] = 0x03 // supported as the standard says
			if rctd {
				b[1] |= 0x80
			}
			binary.BigEndian.PutUint16(b[2:], uint16(len(found.usage)))
			b = append(b, found.usage...)
			if rctd {
				b = append(b, timeout()...)
			}
		}
		return data(b, alloc)
	}
	return lu.check(fieldCDB(2, 2))
}

func opKnown(op byte) bool {
	for _, o := range supportedOps() {
		if o.op == op {
			return true
		}
	}
	return false
}

// Buffers for data-in and data-out, pooled by power-of-two size class
// from 4 KiB to MaxTransferBytes*2.
const (
	minClass = 12
	maxClass = 24
)

var pools [maxClass + 1]sync.Pool

func class(n int) int {
	c := minClass
	for 1<<c < n {
		c++
	}
	return c
}

// GetBuf returns a pooled buffer of at least n bytes; PutBuf returns it.
func GetBuf(n int) *[]byte { return getBuf(n) }

// BufCap is the capacity of the buffer GetBuf(n) returns: what a
// buffer for n bytes costs.
func BufCap(n int) int {
	if c := class(n); c <= maxClass {
		return 1 << c
	}
	return n
}

// PutBuf returns a buffer from GetBuf to the pool.
func PutBuf(b *[]byte) { putBuf(b) }

func getBuf(n int) *[]byte {
	c := class(n)
	if c > maxClass {
		b := make([]byte, n)
		return &b
	}
	if v := pools[c].Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, 1<<c)
	return &b
}

func putBuf(b *[]byte) {
	c := class(cap(*b))
	if c > maxClass || 1<<c != cap(*b) {
		return
	}
	*b = (*b)[:cap(*b)]
	pools[c].Put(b)
}
