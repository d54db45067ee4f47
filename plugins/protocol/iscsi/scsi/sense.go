// Package scsi is a SCSI block device (SBC-3, SPC-4) over a volume: it
// executes command descriptor blocks against a logical unit and answers
// with status, sense data and data-in. It knows nothing of iSCSI; the
// target hands it whole commands (CDB plus all data-out) and sends what it
// returns.
package scsi

import "encoding/binary"

// Status codes (SAM-5).
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusTaskAborted         = 0x40
)

// Sense keys.
const (
	KeyNoSense        = 0x0
	KeyNotReady       = 0x2
	KeyMediumError    = 0x3
	KeyHardwareError  = 0x4
	KeyIllegalRequest = 0x5
	KeyUnitAttention  = 0x6
	KeyDataProtect    = 0x7
	KeyAbortedCommand = 0xb
	KeyMiscompare     = 0xe
)

// Sense is a sense key with its additional sense code and qualifier.
type Sense struct {
	Key  byte
	ASC  byte
	ASCQ byte
	// Info is the INFORMATION field (VALID set) when HasInfo.
	Info    uint64
	HasInfo bool
	// Field points at the CDB (or parameter list) byte and bit in error,
	// for ILLEGAL REQUEST; FieldValid says whether it is set.
	FieldValid bool
	FieldCDB   bool
	FieldByte  uint16
	FieldBit   byte
	BitValid   bool
}

// Common sense conditions.
var (
	SenseInvalidOpcode       = Sense{Key: KeyIllegalRequest, ASC: 0x20}
	SenseLBAOutOfRange       = Sense{Key: KeyIllegalRequest, ASC: 0x21}
	SenseInvalidFieldCDB     = Sense{Key: KeyIllegalRequest, ASC: 0x24}
	SenseLUNotSupported      = Sense{Key: KeyIllegalRequest, ASC: 0x25}
	SenseInvalidFieldParam   = Sense{Key: KeyIllegalRequest, ASC: 0x26}
	SenseParamListLength     = Sense{Key: KeyIllegalRequest, ASC: 0x1a}
	SenseInvalidFieldIU      = Sense{Key: KeyIllegalRequest, ASC: 0x0e, ASCQ: 0x03}
	SenseWriteProtected      = Sense{Key: KeyDataProtect, ASC: 0x27}
	SenseMiscompare          = Sense{Key: KeyMiscompare, ASC: 0x1d}
	SenseReadError           = Sense{Key: KeyMediumError, ASC: 0x11}
	SenseWriteError          = Sense{Key: KeyMediumError, ASC: 0x0c}
	SenseInternalError       = Sense{Key: KeyHardwareError, ASC: 0x44}
	SenseMediumRemovalPrev   = Sense{Key: KeyIllegalRequest, ASC: 0x53, ASCQ: 0x02}
	SenseResetOccurred       = Sense{Key: KeyUnitAttention, ASC: 0x29}
	SenseReservationsPreempt = Sense{Key: KeyUnitAttention, ASC: 0x2a, ASCQ: 0x03}
	SenseReservationsRelease = Sense{Key: KeyUnitAttention, ASC: 0x2a, ASCQ: 0x04}
	SenseRegistrationsPreem  = Sense{Key: KeyUnitAttention, ASC: 0x2a, ASCQ: 0x05}
	SenseModeParamsChanged   = Sense{Key: KeyUnitAttention, ASC: 0x2a, ASCQ: 0x01}
	SenseInsufficientRes     = Sense{Key: KeyIllegalRequest, ASC: 0x55, ASCQ: 0x04}
	SenseCommandsCleared     = Sense{Key: KeyUnitAttention, ASC: 0x2f}
)

// fieldCDB returns s pointing at CDB byte b (bit, if >= 0).
func fieldCDB(b int, bit int) Sense {
	s := SenseInvalidFieldCDB
	s.FieldValid, s.FieldCDB, s.FieldByte = true, true, uint16(b)
	if bit >= 0 {
		s.BitValid, s.FieldBit = true, byte(bit)
	}
	return s
}

// Bytes encodes the sense data, fixed format (0x70) or descriptor format
// (0x72).
func (s Sense) Bytes(descriptor bool) []byte {
	if descriptor {
		b := make([]byte, 8, 8+12+8)
		b[0] = 0x72
		b[1], b[2], b[3] = s.Key, s.ASC, s.ASCQ
		if s.HasInfo {
			d := make([]byte, 12)
			d[0], d[1], d[2] = 0x00, 0x0a, 0x80
			binary.BigEndian.PutUint64(d[4:], s.Info)
			b = append(b, d...)
		}
		if s.FieldValid {
			d := make([]byte, 8)
			d[0], d[1] = 0x02, 0x06
			d[4] = s.sksv()
			binary.BigEndian.PutUint16(d[5:], s.FieldByte)
			b = append(b, d...)
		}
		b[7] = byte(len(b) - 8)
		return b
	}
	b := make([]byte, 18)
	b[0] = 0x70
	if s.HasInfo {
		b[0] |= 0x80
		binary.BigEndian.PutUint32(b[3:], uint32(s.Info))
	}
	b[2] = s.Key
	b[7] = 10
	b[12], b[13] = s.ASC, s.ASCQ
	if s.FieldValid {
		b[15] = s.sksv()
		binary.BigEndian.PutUint16(b[16:], s.FieldByte)
	}
	return b
}

func (s Sense) sksv() byte {
	v := byte(0x80)
	if s.FieldCDB {
		v |= 0x40
	}
	if s.BitValid {
		v |= 0x08 | s.FieldBit&7
	}
	return v
}
