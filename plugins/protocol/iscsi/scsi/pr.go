package scsi

import (
	"encoding/binary"
	"sort"
	"strings"
)

// Persistent reservation types (SPC-4 §6.16.2).
const (
	prWriteExclusive         = 1
	prExclusiveAccess        = 3
	prWriteExclusiveRegsOnly = 5
	prExclusiveAccessRegOnly = 6
	prWriteExclusiveAllRegs  = 7
	prExclusiveAccessAllRegs = 8
)

// prState holds registrations and the reservation. Registrations are by
// nexus; they survive sessions (LU.Join hands them to a new nexus with the
// same initiator port name) but not a restart of the plugin (APTPL is not
// offered).
type prState struct {
	generation uint32
	keys       map[*Nexus]uint64
	holder     *Nexus // reservation holder; nil for all-registrants types
	allRegs    bool   // an all-registrants reservation exists
	typ        byte
}

func (p *prState) reserved() bool { return p.holder != nil || p.allRegs }

// isHolder: the nexus holds the reservation.
func (p *prState) isHolder(n *Nexus) bool {
	if p.allRegs {
		_, ok := p.keys[n]
		return ok
	}
	return p.holder == n
}

// Command classes for reservation conflicts.
func isMediumRead(op byte) bool {
	switch op {
	case opRead6, opRead10, opRead12, opRead16, opVerify10, opVerify12, opVerify16:
		return true
	}
	return false
}

func isMediumWrite(op byte) bool {
	switch op {
	case opWrite6, opWrite10, opWrite12, opWrite16, opWriteVerify10, opWriteVerify12, opWriteVerify16,
		opWriteSame10, opWriteSame16, opUnmap, opCompareAndWrite, opSyncCache10, opSyncCache16, opModeSelect6, opModeSelect10:
		return true
	}
	return false
}

// conflictLocked reports whether c must get RESERVATION CONFLICT.
func (lu *LU) conflictLocked(c *Command) bool {
	op := c.CDB[0]
	switch op {
	case opInquiry, opReportLUNs, opRequestSense, opPRIn, opPROut, opMaintenanceIn, opTestUnitReady, opReadCapacity10, opServiceActionIn16:
		if op == opPROut || op == opPRIn {
			return lu.reserve != nil && lu.reserve != c.Nexus
		}
		return false
	}
	if lu.reserve != nil {
		if lu.reserve == c.Nexus {
			return false
		}
		return op != opRelease6
	}
	p := &lu.pr
	if !p.reserved() {
		return false
	}
	if op == opReserve6 || op == opRelease6 {
		return true
	}
	if p.isHolder(c.Nexus) {
		return false
	}
	_, registered := p.keys[c.Nexus]
	read, write := isMediumRead(op), isMediumWrite(op)
	if !read && !write {
		return false
	}
	switch p.typ {
	case prWriteExclusive:
		return write
	case prExclusiveAccess:
		return true
	case prWriteExclusiveRegsOnly, prWriteExclusiveAllRegs:
		return write && !registered
	case prExclusiveAccessRegOnly, prExclusiveAccessAllRegs:
		return !registered
	}
	return false
}

func (lu *LU) reserve6(c *Command) Result {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.pr.reserved() {
		return Result{Status: StatusReservationConflict, Transfer: -1}
	}
	if lu.reserve != nil && lu.reserve != c.Nexus {
		return Result{Status: StatusReservationConflict, Transfer: -1}
	}
	lu.reserve = c.Nexus
	lu.updateSlowLocked()
	return good()
}

func (lu *LU) release6(c *Command) Result {
	lu.mu.Lock()
	defer lu.mu.Unlock()
	if lu.pr.reserved() {
		return Result{Status: StatusReservationConflict, Transfer: -1}
	}
	if lu.reserve == c.Nexus {
		lu.reserve = nil
		lu.updateSlowLocked()
	}
	return good()
}

func (lu *LU) prIn(c *Command) Result {
	cdb := c.CDB
	sa := cdb[1] & 0x1f
	alloc := int(binary.BigEndian.Uint16(cdb[7:]))
	lu.mu.Lock()
	defer lu.mu.Unlock()
	p := &lu.pr
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, p.generation)
	switch sa {
	case 0: // READ KEYS
		for _, n := range lu.sortedRegs() {
			b = binary.BigEndian.AppendUint64(b, p.keys[n])
		}
		binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	case 1: // READ RESERVATION
		if p.reserved() {
			d := make([]byte, 16)
			if !p.allRegs {
				binary.BigEndian.PutUint64(d, p.keys[p.holder])
			}
			d[13] = p.typ & 0x0f
			b = append(b, d...)
		}
		binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	case 2: // REPORT CAPABILITIES
		b = make([]byte, 8)
		binary.BigEndian.PutUint16(b, 8)
		b[2] = 0x10 // CRH: RESERVE(6)/RELEASE(6) handled as SPC-3 says
		b[3] = 0x80 // TMV: the type mask is valid
		b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02
		b[5] = 0x01
	case 3: // READ FULL STATUS
		for _, n := range lu.sortedRegs() {
			tid := transportID(n.ID)
			d := make([]byte, 24, 24+len(tid))
			binary.BigEndian.PutUint64(d, p.keys[n])
			if p.isHolder(n) {
				d[12] = 0x01
				d[13] = p.typ & 0x0f
			}
			binary.BigEndian.PutUint16(d[18:], 1) // relative target port
			binary.BigEndian.PutUint32(d[20:], uint32(len(tid)))
			d = append(d, tid...)
			b = append(b, d...)
		}
		binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	default:
		return Result{Status: StatusCheckCondition, Sense: fieldCDB(1, 4).Bytes(lu.dsense), Transfer: -1}
	}
	return data(b, alloc)
}

func (lu *LU) sortedRegs() []*Nexus {
	out := make([]*Nexus, 0, len(lu.pr.keys))
	for n := range lu.pr.keys {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// transportID is the iSCSI TransportID of an initiator port (format 01b).
func transportID(id string) []byte {
	name := []byte(strings.Replace(id, ",i,", ",i,", 1))
	name = append(name, 0)
	for (len(name)+4)%4 != 0 || len(name) < 20 {
		name = append(name, 0)
	}
	b := make([]byte, 4, 4+len(name))
	b[0] = 0x40 | 0x05
	binary.BigEndian.PutUint16(b[2:], uint16(len(name)))
	return append(b, name...)
}

func (lu *LU) prOut(c *Command) Result {
	cdb := c.CDB
	sa := cdb[1] & 0x1f
	scope := cdb[2] >> 4
	typ := cdb[2] & 0x0f
	plen := int(binary.BigEndian.Uint32(cdb[5:]))
	conflict := Result{Status: StatusReservationConflict, Transfer: -1}
	lu.mu.Lock()
	defer func() {
		lu.updateSlowLocked()
		lu.mu.Unlock()
	}()
	chk := func(s Sense) Result {
		return Result{Status: StatusCheckCondition, Sense: s.Bytes(lu.dsense), Transfer: -1}
	}
	if sa > 6 {
		return chk(fieldCDB(1, 4))
	}
	if plen != 24 {
		return chk(SenseParamListLength)
	}
	if len(c.DataOut) < 24 {
		return chk(SenseParamListLength)
	}
	prm := c.DataOut[:24]
	key := binary.BigEndian.Uint64(prm)
	saKey := binary.BigEndian.Uint64(prm[8:])
	flags := prm[20]
	if flags&0x08 != 0 || flags&0x04 != 0 || flags&0x01 != 0 { // SPEC_I_PT, ALL_TG_PT, APTPL
		return chk(SenseInvalidFieldParam)
	}
	p := &lu.pr
	cur, registered := p.keys[c.Nexus]
	validType := func() bool {
		switch typ {
		case prWriteExclusive, prExclusiveAccess, prWriteExclusiveRegsOnly, prExclusiveAccessRegOnly, prWriteExclusiveAllRegs, prExclusiveAccessAllRegs:
			return true
		}
		return false
	}
	switch sa {
	case 0, 6: // REGISTER, REGISTER AND IGNORE EXISTING KEY
		if sa == 0 {
			if !registered && key != 0 {
				return conflict
			}
			if registered && key != cur {
				return conflict
			}
		}
		if saKey == 0 {
			if registered {
				lu.unregisterLocked(c.Nexus)
				p.generation++
			}
			return good()
		}
		p.keys[c.Nexus] = saKey
		p.generation++
		return good()
	}
	if !registered || key != cur {
		return conflict
	}
	switch sa {
	case 1: // RESERVE
		if scope != 0 {
			return chk(fieldCDB(2, 7))
		}
		if !validType() {
			return chk(fieldCDB(2, 3))
		}
		if p.reserved() {
			if p.isHolder(c.Nexus) && p.typ == typ {
				return good()
			}
			return conflict
		}
		p.typ = typ
		if typ == prWriteExclusiveAllRegs || typ == prExclusiveAccessAllRegs {
			p.allRegs, p.holder = true, nil
		} else {
			p.holder = c.Nexus
		}
		return good()
	case 2: // RELEASE
		if !p.reserved() || !p.isHolder(c.Nexus) {
			return good()
		}
		if scope != 0 || p.typ != typ {
			return chk(Sense{Key: KeyIllegalRequest, ASC: 0x26, ASCQ: 0x04})
		}
		lu.releaseLocked(c.Nexus)
		return good()
	case 3: // CLEAR
		for n := range p.keys {
			if n != c.Nexus {
				lu.addUALocked(SenseReservationsPreempt, n)
			}
		}
		p.keys = map[*Nexus]uint64{}
		p.holder, p.allRegs, p.typ = nil, false, 0
		p.generation++
		return good()
	case 4, 5: // PREEMPT, PREEMPT AND ABORT
		if !validType() && p.reserved() {
			return chk(fieldCDB(2, 3))
		}
		if p.allRegs {
			if saKey == 0 {
				// Remove every other registration, take the reservation.
				for n := range p.keys {
					if n != c.Nexus {
						delete(p.keys, n)
						lu.addUALocked(SenseRegistrationsPreem, n)
					}
				}
				p.allRegs, p.holder, p.typ = typ == prWriteExclusiveAllRegs || typ == prExclusiveAccessAllRegs, nil, typ
				if !p.allRegs {
					p.holder = c.Nexus
				}
				p.generation++
				return good()
			}
			lu.removeKeyLocked(saKey, c.Nexus)
			p.generation++
			return good()
		}
		if saKey == 0 {
			return chk(SenseInvalidFieldParam)
		}
		if p.holder != nil && p.keys[p.holder] == saKey {
			lu.removeKeyLocked(saKey, c.Nexus)
			p.typ = typ
			if typ == prWriteExclusiveAllRegs || typ == prExclusiveAccessAllRegs {
				p.allRegs, p.holder = true, nil
			} else {
				p.holder = c.Nexus
			}
			p.generation++
			return good()
		}
		found := false
		for _, k := range p.keys {
			if k == saKey {
				found = true
			}
		}
		if !found {
			return conflict
		}
		lu.removeKeyLocked(saKey, c.Nexus)
		p.generation++
		return good()
	}
	return chk(fieldCDB(1, 4))
}

// removeKeyLocked drops every registration with key (except by's own,
// which a PREEMPT keeps), with a unit attention to each removed nexus.
func (lu *LU) removeKeyLocked(key uint64, by *Nexus) {
	p := &lu.pr
	for n, k := range p.keys {
		if k == key && n != by {
			delete(p.keys, n)
			if p.holder == n {
				p.holder = nil
			}
			lu.addUALocked(SenseRegistrationsPreem, n)
		}
	}
}

func (lu *LU) unregisterLocked(n *Nexus) {
	p := &lu.pr
	delete(p.keys, n)
	if p.holder == n {
		lu.releaseLocked(n)
	}
	if p.allRegs && len(p.keys) == 0 {
		p.allRegs, p.typ = false, 0
	}
}

// releaseLocked ends the reservation; registrants other than n learn of it
// when the type gave them access.
func (lu *LU) releaseLocked(n *Nexus) {
	p := &lu.pr
	typ := p.typ
	p.holder, p.allRegs, p.typ = nil, false, 0
	if typ != prWriteExclusive && typ != prExclusiveAccess {
		for o := range p.keys {
			if o != n {
				lu.addUALocked(SenseReservationsRelease, o)
			}
		}
	}
}
