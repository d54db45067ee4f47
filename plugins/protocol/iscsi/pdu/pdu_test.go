package pdu

import (
	"bytes"
	"errors"
	"testing"
)

func samplePDU() *PDU {
	p := &PDU{}
	p.SetOpcode(OpSCSICommand, false)
	p.Header[1] = FlagFinal | FlagWrite
	p.SetLUN(0)
	p.SetU32(16, 0x1234)
	p.SetU32(20, 7)
	p.Data = []byte("seven b")
	return p
}

func TestRoundTripWithDigests(t *testing.T) {
	for _, dg := range []struct{ h, d bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		p := samplePDU()
		wire := p.Encode(nil, dg.h, dg.d)
		want := BHSLen + 8 // 7 bytes padded to 8
		if dg.h {
			want += 4
		}
		if dg.d {
			want += 4
		}
		if len(wire) != want {
			t.Fatalf("digests %v: %d bytes on the wire, want %d", dg, len(wire), want)
		}
		r := Reader{R: bytes.NewReader(wire), HeaderDigest: dg.h, DataDigest: dg.d}
		var got PDU
		if err := r.Read(&got); err != nil {
			t.Fatalf("digests %v: %v", dg, err)
		}
		if got.Header != p.Header || !bytes.Equal(got.Data, p.Data) || got.ITT() != 0x1234 || got.Opcode() != OpSCSICommand {
			t.Fatalf("digests %v: got %v %q", dg, &got, got.Data)
		}
	}
}

func TestDigestErrorsAndTooLong(t *testing.T) {
	p := samplePDU()
	wire := p.Encode(nil, true, true)
	bad := append([]byte(nil), wire...)
	bad[3] ^= 1
	r := Reader{R: bytes.NewReader(bad), HeaderDigest: true, DataDigest: true}
	if err := r.Read(&PDU{}); !errors.Is(err, ErrHeaderDigest) {
		t.Errorf("corrupt header: %v", err)
	}
	bad = append([]byte(nil), wire...)
	bad[BHSLen+4] ^= 1
	r = Reader{R: bytes.NewReader(bad), HeaderDigest: true, DataDigest: true}
	if err := r.Read(&PDU{}); !errors.Is(err, ErrDataDigest) {
		t.Errorf("corrupt data: %v", err)
	}
	// A segment over MaxData is consumed whole: the next PDU still reads.
	p.Data = make([]byte, 1000)
	two := append(p.Encode(nil, false, false), samplePDU().Encode(nil, false, false)...)
	r = Reader{R: bytes.NewReader(two), MaxData: 512}
	if err := r.Read(&PDU{}); !errors.Is(err, ErrTooLong) {
		t.Errorf("oversized segment: %v", err)
	}
	var next PDU
	if err := r.Read(&next); err != nil || string(next.Data) != "seven b" {
		t.Errorf("PDU after an oversized one: %v %q", err, next.Data)
	}
}

func TestText(t *testing.T) {
	b := EncodeText([]KV{{"InitiatorName", "iqn.x"}, {"HeaderDigest", "CRC32C,None"}})
	kvs, err := ParseText(append(b, 0, 0))
	if err != nil || len(kvs) != 2 || kvs[1].Value != "CRC32C,None" {
		t.Fatalf("%v %+v", err, kvs)
	}
	if v, ok := Get(kvs, "InitiatorName"); !ok || v != "iqn.x" {
		t.Errorf("Get: %q %v", v, ok)
	}
	for _, bad := range []string{"novalue\x00", "=x\x00", string(bytes.Repeat([]byte("k"), 64)) + "=v\x00"} {
		if _, err := ParseText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzRead feeds arbitrary streams to the PDU reader: it must never panic
// or read past what a header announces.
func FuzzRead(f *testing.F) {
	f.Add(byte(0), samplePDU().Encode(nil, false, false))
	f.Add(byte(3), samplePDU().Encode(nil, true, true))
	f.Add(byte(1), []byte{0x01, 0x80, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, flags byte, data []byte) {
		r := Reader{R: bytes.NewReader(data), HeaderDigest: flags&1 != 0, DataDigest: flags&2 != 0, MaxData: int(flags) << 8}
		var p PDU
		for range 8 {
			if err := r.Read(&p); err != nil && !errors.Is(err, ErrTooLong) && !errors.Is(err, ErrDataDigest) {
				return
			}
			if len(p.Data) > p.DataLen() {
				t.Fatalf("data %d longer than its length field %d", len(p.Data), p.DataLen())
			}
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("a=b\x00c=d\x00"))
	f.Add([]byte("=\x00\x00==\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		kvs, _ := ParseText(data)
		for _, kv := range kvs {
			if kv.Key == "" || len(kv.Key) > MaxKeyLen {
				t.Fatalf("bad key %q", kv.Key)
			}
		}
	})
}
