package scsi

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
)

// mem is an in-memory Backing.
type mem struct {
	mu      sync.Mutex
	b       []byte
	flushes int
}

func newMem(size int) *mem { return &mem{b: make([]byte, size)} }

func (m *mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.b[off:]), nil
}

func (m *mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.b[off:], p), nil
}

func (m *mem) Size() int64       { return int64(len(m.b)) }
func (m *mem) BlockSize() uint32 { return 512 }
func (m *mem) Flush() error      { m.mu.Lock(); m.flushes++; m.mu.Unlock(); return nil }
func (m *mem) Discard(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.b[off : off+n])
	return nil
}

func newLU(t testing.TB) (*LU, *mem) {
	m := newMem(1 << 20)
	return NewLU(m, Identity{Vendor: "DLS", Product: "test", Revision: "1", Name: "iqn.2026-11.io.dls:t"}), m
}

func cdb16(op byte, lba uint64, n uint32, flags byte) []byte {
	c := make([]byte, 16)
	c[0], c[1] = op, flags
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func senseOf(t testing.TB, r Result) (key, asc byte) {
	t.Helper()
	if r.Status != StatusCheckCondition || len(r.Sense) < 14 {
		t.Fatalf("status %#x sense %x, want CHECK CONDITION", r.Status, r.Sense)
	}
	return r.Sense[2] & 0xf, r.Sense[12]
}

func TestReadWriteFlushAndRange(t *testing.T) {
	lu, m := newLU(t)
	n := &Nexus{ID: "a"}
	data := bytes.Repeat([]byte{0xab}, 4096)
	r := lu.Execute(&Command{CDB: cdb16(0x8a, 8, 8, 0x08), Nexus: n, DataOut: data})
	if r.Status != StatusGood || m.flushes != 1 {
		t.Fatalf("FUA write: %+v, %d flushes", r, m.flushes)
	}
	r = lu.Execute(&Command{CDB: cdb16(0x88, 8, 8, 0), Nexus: n, ExpectedIn: 4096})
	if r.Status != StatusGood || !bytes.Equal(r.Data, data) {
		t.Fatalf("read back: %+v", r.Status)
	}
	r.Release()
	if k, asc := senseOf(t, lu.Execute(&Command{CDB: cdb16(0x88, 2047, 2, 0), Nexus: n, ExpectedIn: 1024})); k != KeyIllegalRequest || asc != 0x21 {
		t.Errorf("read past the end: key %x asc %x", k, asc)
	}
	if k, asc := senseOf(t, lu.Execute(&Command{CDB: cdb16(0x88, ^uint64(0), 1, 0), Nexus: n, ExpectedIn: 512})); k != KeyIllegalRequest || asc != 0x21 {
		t.Errorf("LBA overflow: key %x asc %x", k, asc)
	}
	if k, asc := senseOf(t, lu.Execute(&Command{CDB: cdb16(0x88, 0, 1, 0x20), Nexus: n, ExpectedIn: 512})); k != KeyIllegalRequest || asc != 0x24 {
		t.Errorf("RDPROTECT: key %x asc %x", k, asc)
	}
	if r := lu.Execute(&Command{CDB: make([]byte, 10), Nexus: n}); r.Status != StatusGood {
		t.Errorf("TUR: %+v", r)
	}
	sync10 := make([]byte, 10)
	sync10[0] = 0x35
	if r := lu.Execute(&Command{CDB: sync10, Nexus: n}); r.Status != StatusGood || m.flushes != 2 {
		t.Errorf("SYNCHRONIZE CACHE: %+v, %d flushes", r, m.flushes)
	}
	if k, asc := senseOf(t, lu.Execute(&Command{CDB: []byte{0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Nexus: n})); k != KeyIllegalRequest || asc != 0x20 {
		t.Errorf("unknown opcode: key %x asc %x", k, asc)
	}
}

func TestInquiryAndCapacity(t *testing.T) {
	lu, _ := newLU(t)
	n := &Nexus{ID: "a"}
	inq := []byte{0x12, 0, 0, 0, 255, 0}
	r := lu.Execute(&Command{CDB: inq, Nexus: n})
	if r.Status != StatusGood || len(r.Data) < 36 || string(r.Data[8:11]) != "DLS" {
		t.Fatalf("standard inquiry %x", r.Data)
	}
	for _, page := range []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2} {
		r := lu.Execute(&Command{CDB: []byte{0x12, 1, page, 0, 255, 0}, Nexus: n})
		if r.Status != StatusGood || r.Data[1] != page || int(binary.BigEndian.Uint16(r.Data[2:]))+4 != len(r.Data) {
			t.Errorf("VPD %#x: %+v %x", page, r.Status, r.Data)
		}
	}
	rc := make([]byte, 16)
	rc[0], rc[1], rc[13] = 0x9e, 0x10, 32
	r = lu.Execute(&Command{CDB: rc, Nexus: n})
	if binary.BigEndian.Uint64(r.Data) != 2047 || binary.BigEndian.Uint32(r.Data[8:]) != 512 {
		t.Errorf("READ CAPACITY(16) %x", r.Data)
	}
	if r := NoUnit([]byte{0x12, 0, 0, 0, 36, 0}); r.Data[0] != 0x7f {
		t.Errorf("INQUIRY of a missing LUN: %x", r.Data)
	}
}

func TestWriteSameUnmapCompareAndWrite(t *testing.T) {
	lu, m := newLU(t)
	n := &Nexus{ID: "a"}
	block := bytes.Repeat([]byte{7}, 512)
	ws := cdb16(0x93, 10, 4, 0)
	if r := lu.Execute(&Command{CDB: ws, Nexus: n, DataOut: block}); r.Status != StatusGood {
		t.Fatal(r)
	}
	if !bytes.Equal(m.b[10*512:14*512], bytes.Repeat([]byte{7}, 2048)) {
		t.Fatal("WRITE SAME did not write the pattern")
	}
	// UNMAP one block: it reads back as zeros.
	p := make([]byte, 24)
	binary.BigEndian.PutUint16(p, 22)
	binary.BigEndian.PutUint16(p[2:], 16)
	binary.BigEndian.PutUint64(p[8:], 11)
	binary.BigEndian.PutUint32(p[16:], 1)
	um := make([]byte, 10)
	um[0], um[8] = 0x42, 24
	if r := lu.Execute(&Command{CDB: um, Nexus: n, DataOut: p}); r.Status != StatusGood {
		t.Fatal(r)
	}
	if !bytes.Equal(m.b[11*512:12*512], make([]byte, 512)) || m.b[10*512] != 7 {
		t.Fatal("UNMAP")
	}
	// COMPARE AND WRITE: match then miscompare.
	caw := cdb16(0x89, 10, 0, 0)
	caw[13] = 1
	newData := bytes.Repeat([]byte{9}, 512)
	if r := lu.Execute(&Command{CDB: caw, Nexus: n, DataOut: append(append([]byte(nil), block...), newData...)}); r.Status != StatusGood {
		t.Fatalf("compare and write: %+v", r)
	}
	if k, asc := senseOf(t, lu.Execute(&Command{CDB: caw, Nexus: n, DataOut: append(append([]byte(nil), block...), newData...)})); k != KeyMiscompare || asc != 0x1d {
		t.Errorf("miscompare: key %x asc %x", k, asc)
	}
}

func TestPersistentReservations(t *testing.T) {
	lu, _ := newLU(t)
	a, b := &Nexus{ID: "a"}, &Nexus{ID: "b"}
	prout := func(n *Nexus, sa, typ byte, key, saKey uint64) Result {
		c := make([]byte, 10)
		c[0], c[1], c[2], c[8] = 0x5f, sa, typ, 24
		p := make([]byte, 24)
		binary.BigEndian.PutUint64(p, key)
		binary.BigEndian.PutUint64(p[8:], saKey)
		return lu.Execute(&Command{CDB: c, Nexus: n, DataOut: p})
	}
	if r := prout(a, 0, 0, 0, 0xaa); r.Status != StatusGood {
		t.Fatal(r)
	}
	if r := prout(b, 0, 0, 0, 0xbb); r.Status != StatusGood {
		t.Fatal(r)
	}
	if r := prout(a, 1, prExclusiveAccess, 0xaa, 0); r.Status != StatusGood {
		t.Fatal(r)
	}
	read := cdb16(0x88, 0, 1, 0)
	if r := lu.Execute(&Command{CDB: read, Nexus: b, ExpectedIn: 512}); r.Status != StatusReservationConflict {
		t.Errorf("read by a non-holder of an exclusive-access reservation: %#x", r.Status)
	}
	if r := lu.Execute(&Command{CDB: read, Nexus: a, ExpectedIn: 512}); r.Status != StatusGood {
		t.Errorf("read by the holder: %#x", r.Status)
	}
	if r := prout(b, 1, prExclusiveAccess, 0xbc, 0); r.Status != StatusReservationConflict {
		t.Errorf("reserve with a wrong key: %#x", r.Status)
	}
	// READ KEYS lists both.
	c := make([]byte, 10)
	c[0], c[8] = 0x5e, 255
	r := lu.Execute(&Command{CDB: c, Nexus: b})
	if binary.BigEndian.Uint32(r.Data[4:]) != 16 {
		t.Errorf("READ KEYS %x", r.Data)
	}
	if r := prout(b, 4, prWriteExclusive, 0xbb, 0xaa); r.Status != StatusGood {
		t.Fatalf("preempt: %+v", r)
	}
	if r := lu.Execute(&Command{CDB: read, Nexus: b, ExpectedIn: 512}); r.Status != StatusGood {
		t.Errorf("read by the new holder: %#x", r.Status)
	}
	// a was preempted: a unit attention, then a conflict for writes.
	if r := lu.Execute(&Command{CDB: read, Nexus: a, ExpectedIn: 512}); r.Status != StatusCheckCondition {
		t.Errorf("preempted nexus: %#x, want a unit attention", r.Status)
	}
	if r := lu.Execute(&Command{CDB: cdb16(0x8a, 0, 1, 0), Nexus: a, DataOut: make([]byte, 512)}); r.Status != StatusReservationConflict {
		t.Errorf("write by a preempted nexus: %#x", r.Status)
	}
}

// FuzzExecute runs arbitrary CDBs and data against a unit: it never
// panics, and GOOD answers stay within what was asked.
func FuzzExecute(f *testing.F) {
	f.Add(cdb16(0x88, 0, 1, 0), []byte{}, uint32(512))
	f.Add(cdb16(0x8a, 1, 1, 0x08), make([]byte, 512), uint32(0))
	f.Add([]byte{0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0}, make([]byte, 24), uint32(0))
	f.Add([]byte{0x5f, 1, 3, 0, 0, 0, 0, 0, 24, 0}, make([]byte, 24), uint32(0))
	f.Add([]byte{0xa3, 0x0c, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0}, []byte{}, uint32(65535))
	f.Add([]byte{0x1a, 0, 0x3f, 0, 0xff, 0}, []byte{}, uint32(255))
	f.Add([]byte{0x55, 0x10, 0, 0, 0, 0, 0, 0, 20, 0}, make([]byte, 20), uint32(0))
	lu, _ := newLU(f)
	n := &Nexus{ID: "fuzz"}
	f.Fuzz(func(t *testing.T, cdb, out []byte, in uint32) {
		if len(cdb) > 16 {
			cdb = cdb[:16]
		}
		r := lu.Execute(&Command{CDB: cdb, Nexus: n, DataOut: out, ExpectedIn: in % (1 << 24)})
		if r.Status == StatusCheckCondition && len(r.Sense) < 8 {
			t.Fatalf("CHECK CONDITION without sense for %x", cdb)
		}
		if r.buf != nil && len(r.Data) > int(in%(1<<24)) {
			t.Fatalf("read %d bytes for a %d-byte buffer", len(r.Data), in)
		}
		r.Release()
	})
}
