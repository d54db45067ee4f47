// Package pdu reads and writes iSCSI protocol data units (RFC 7143 §11):
// the 48-byte basic header segment, additional header segments, the data
// segment with its padding, and the optional CRC32C header and data
// digests. It also parses and formats the key=value text of login and text
// requests. The target and the initiator both build on it.
package pdu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// BHSLen is the length of the basic header segment.
const BHSLen = 48

// MaxDataSegment is the largest data segment the 24-bit length can name.
const MaxDataSegment = 1<<24 - 1

// Opcodes (RFC 7143 §11.1.1). Initiator opcodes are below 0x20.
const (
	OpNOPOut       = 0x00
	OpSCSICommand  = 0x01
	OpTaskMgmt     = 0x02
	OpLogin        = 0x03
	OpText         = 0x04
	OpDataOut      = 0x05
	OpLogout       = 0x06
	OpSNACK        = 0x10
	OpNOPIn        = 0x20
	OpSCSIResponse = 0x21
	OpTaskMgmtResp = 0x22
	OpLoginResp    = 0x23
	OpTextResp     = 0x24
	OpDataIn       = 0x25
	OpLogoutResp   = 0x26
	OpR2T          = 0x31
	OpAsync        = 0x32
	OpReject       = 0x3f
)

// Flag bits of byte 1.
const (
	FlagFinal    = 0x80 // F: last PDU of a sequence
	FlagRead     = 0x40 // SCSI Command R
	FlagWrite    = 0x20 // SCSI Command W
	FlagContinue = 0x40 // Login/Text C
	FlagTransit  = 0x80 // Login T
	FlagAck      = 0x40 // Data-In A
	FlagOverflow = 0x04 // O: residual overflow
	FlagUnder    = 0x02 // U: residual underflow
	FlagStatus   = 0x01 // Data-In S: status in this PDU
)

// Reject reasons (RFC 7143 §11.17.1).
const (
	RejectDigestError      = 0x02
	RejectSNACK            = 0x03
	RejectProtocolError    = 0x04
	RejectNotSupported     = 0x05
	RejectImmediateCommand = 0x06
	RejectTaskInProgress   = 0x07
	RejectInvalidDataACK   = 0x08
	RejectInvalidField     = 0x09
	RejectLongOperation    = 0x0a
	RejectNegotiation      = 0x0b
	RejectWaitingLogout    = 0x0c
)

// Errors Read returns. After ErrDataDigest and ErrTooLong the PDU has been
// read whole (its header is valid), so the stream stays in step.
var (
	ErrHeaderDigest = errors.New("iscsi: header digest mismatch")
	ErrDataDigest   = errors.New("iscsi: data digest mismatch")
	ErrTooLong      = errors.New("iscsi: data segment longer than negotiated")
)

// PDU is one protocol data unit. Header is the basic header segment; AHS
// holds any additional header segments; Data the data segment, unpadded.
type PDU struct {
	Header [BHSLen]byte
	AHS    []byte
	Data   []byte
}

// Opcode returns the header's opcode (without the immediate bit).
func (p *PDU) Opcode() byte { return p.Header[0] & 0x3f }

// Immediate reports the I bit.
func (p *PDU) Immediate() bool { return p.Header[0]&0x40 != 0 }

// Flags returns byte 1.
func (p *PDU) Flags() byte { return p.Header[1] }

// DataLen is the DataSegmentLength field.
func (p *PDU) DataLen() int {
	return int(p.Header[5])<<16 | int(p.Header[6])<<8 | int(p.Header[7])
}

// AHSLen is the TotalAHSLength field in bytes.
func (p *PDU) AHSLen() int { return int(p.Header[4]) * 4 }

// LUN is bytes 8-15.
func (p *PDU) LUN() uint64 { return binary.BigEndian.Uint64(p.Header[8:16]) }

// ITT is the initiator task tag.
func (p *PDU) ITT() uint32 { return p.U32(16) }

// U32 reads the big-endian word at off.
func (p *PDU) U32(off int) uint32 { return binary.BigEndian.Uint32(p.Header[off:]) }

// SetU32 writes v at off.
func (p *PDU) SetU32(off int, v uint32) { binary.BigEndian.PutUint32(p.Header[off:], v) }

// SetOpcode sets byte 0.
func (p *PDU) SetOpcode(op byte, immediate bool) {
	p.Header[0] = op
	if immediate {
		p.Header[0] |= 0x40
	}
}

// SetDataLen writes the DataSegmentLength field from len(p.Data).
func (p *PDU) SetDataLen() { setLen24(p.Header[5:8], len(p.Data)) }

func setLen24(b []byte, n int) {
	b[0], b[1], b[2] = byte(n>>16), byte(n>>8), byte(n)
}

// SetLUN writes bytes 8-15.
func (p *PDU) SetLUN(l uint64) { binary.BigEndian.PutUint64(p.Header[8:16], l) }

// String names the PDU for logs.
func (p *PDU) String() string {
	return fmt.Sprintf("pdu(op=%#02x itt=%#x len=%d)", p.Opcode(), p.ITT(), p.DataLen())
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the iSCSI digest of b.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Pad returns the padding that rounds n up to a multiple of four.
func Pad(n int) int { return (4 - n%4) % 4 }

// Reader reads PDUs from a stream.
type Reader struct {
	R io.Reader
	// HeaderDigest and DataDigest are on once negotiated.
	HeaderDigest bool
	DataDigest   bool
	// MaxData bounds the data segment (MaxRecvDataSegmentLength declared
	// by the reader's side); 0 means MaxDataSegment.
	MaxData int

	scratch [4]byte
	tail    [8]byte
}

// Read reads the next PDU into p, reusing p.Data's storage when it is big
// enough. On ErrTooLong the data was read and thrown away; on
// ErrDataDigest it was read and is in p.Data. Any other error leaves the
// stream unusable.
func (r *Reader) Read(p *PDU) error {
	if err := r.ReadHeader(p); err != nil {
		return err
	}
	n := p.DataLen()
	if n > r.max() {
		p.Data = p.Data[:0]
		return r.Skip(p)
	}
	p.Data = growTo(p.Data, n)
	return r.ReadData(p, p.Data)
}

func (r *Reader) max() int {
	if r.MaxData == 0 {
		return MaxDataSegment
	}
	return r.MaxData
}

// ReadHeader reads the basic header, any AHS and the header digest. The
// caller then reads the data segment with ReadData or Skip.
func (r *Reader) ReadHeader(p *PDU) error {
	if _, err := io.ReadFull(r.R, p.Header[:]); err != nil {
		return err
	}
	ahs := p.AHSLen()
	if ahs > 0 {
		p.AHS = growTo(p.AHS, ahs)
		if _, err := io.ReadFull(r.R, p.AHS); err != nil {
			return err
		}
	} else {
		p.AHS = p.AHS[:0]
	}
	if r.HeaderDigest {
		if _, err := io.ReadFull(r.R, r.scratch[:]); err != nil {
			return err
		}
		d := crc32.Update(CRC32C(p.Header[:]), castagnoli, p.AHS)
		if binary.LittleEndian.Uint32(r.scratch[:]) != d {
			return ErrHeaderDigest
		}
	}
	return nil
}

// TooLong reports whether p's data segment exceeds MaxData.
func (r *Reader) TooLong(p *PDU) bool { return p.DataLen() > r.max() }

// ReadData reads p's data segment into dst (len(dst) == p.DataLen()),
// then its padding and digest.
func (r *Reader) ReadData(p *PDU, dst []byte) error {
	n := p.DataLen()
	if len(dst) != n {
		return fmt.Errorf("iscsi: data buffer of %d bytes for a %d-byte segment", len(dst), n)
	}
	if n == 0 {
		return nil
	}
	if _, err := io.ReadFull(r.R, dst); err != nil {
		return err
	}
	tail := Pad(n)
	if r.DataDigest {
		tail += 4
	}
	if tail == 0 {
		return nil
	}
	if _, err := io.ReadFull(r.R, r.tail[:tail]); err != nil {
		return err
	}
	if r.DataDigest {
		pad := Pad(n)
		want := binary.LittleEndian.Uint32(r.tail[pad:])
		if crc32.Update(CRC32C(dst), castagnoli, r.tail[:pad]) != want {
			return ErrDataDigest
		}
	}
	return nil
}

// Skip reads and discards p's data segment, returning ErrTooLong when it
// was longer than MaxData.
func (r *Reader) Skip(p *PDU) error {
	n := p.DataLen()
	total := n + Pad(n)
	if r.DataDigest && n > 0 {
		total += 4
	}
	if _, err := io.CopyN(io.Discard, r.R, int64(total)); err != nil {
		return err
	}
	if n > r.max() {
		return ErrTooLong
	}
	return nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]byte, n)
}

// Encode appends the PDU's wire form to dst: header (DataSegmentLength
// set from Data), AHS, digests and padding as asked. The target's writer
// avoids this copy for large data; the initiator and tests use it.
func (p *PDU) Encode(dst []byte, headerDigest, dataDigest bool) []byte {
	p.SetDataLen()
	p.Header[4] = byte(len(p.AHS) / 4)
	dst = append(dst, p.Header[:]...)
	dst = append(dst, p.AHS...)
	if headerDigest {
		d := crc32.Update(CRC32C(p.Header[:]), castagnoli, p.AHS)
		dst = binary.LittleEndian.AppendUint32(dst, d)
	}
	if len(p.Data) > 0 {
		dst = append(dst, p.Data...)
		var zero [3]byte
		pad := zero[:Pad(len(p.Data))]
		dst = append(dst, pad...)
		if dataDigest {
			d := crc32.Update(CRC32C(p.Data), castagnoli, pad)
			dst = binary.LittleEndian.AppendUint32(dst, d)
		}
	}
	return dst
}

// DataDigest returns the digest of data followed by its padding.
func DataDigest(data []byte) uint32 {
	var zero [3]byte
	return crc32.Update(CRC32C(data), castagnoli, zero[:Pad(len(data))])
}

// HeaderDigest returns the digest of a header without AHS.
func HeaderDigest(h []byte) uint32 { return CRC32C(h) }
