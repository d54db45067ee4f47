package tftpd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// TFTP opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   uint16 = 1
	opWRQ   uint16 = 2
	opDATA  uint16 = 3
	opACK   uint16 = 4
	opERROR uint16 = 5
	opOACK  uint16 = 6
)

// TFTP error codes (RFC 1350, RFC 2347).
const (
	codeNotDefined   uint16 = 0
	codeNotFound     uint16 = 1
	codeAccess       uint16 = 2
	codeIllegalOp    uint16 = 4
	codeOptionRefuse uint16 = 8
)

// Protocol limits.
const (
	// MaxNameLen is the longest file name served, in bytes.
	MaxNameLen = 255
	// MinBlksize and MaxBlksize bound the blksize option (RFC 2348).
	MinBlksize = 8
	MaxBlksize = 65464
	// DefaultBlksize is the block size without a blksize option.
	DefaultBlksize = 512
	// MaxTimeout bounds the timeout option in seconds (RFC 2349).
	MaxTimeout = 255
	// MaxWindowsize bounds the windowsize option (RFC 7440).
	MaxWindowsize = 65535
	// maxRequest is the largest request packet read; RFC 2347 asks for
	// 512 bytes at most, some clients send more.
	maxRequest = 65535
)

// Transfer modes.
const (
	modeOctet    = "octet"
	modeNetascii = "netascii"
)

// Request is a parsed read or write request.
type Request struct {
	// Write is true for a WRQ.
	Write bool
	// Name is the file name as the client sent it.
	Name string
	// Mode is "octet" or "netascii", lower-cased.
	Mode string
	// Options are the RFC 2347 options in the order sent, names
	// lower-cased. Empty values are kept (a client asking "tsize" "0"
	// sends a value).
	Options []Option
}

// Option is one name/value pair of a request.
type Option struct {
	Name, Value string
}

// requestError is why a request is refused: the TFTP error code and
// message sent to the client, and the reason counted.
type requestError struct {
	code   uint16
	reason string
	msg    string
}

func (e *requestError) Error() string { return e.reason + ": " + e.msg }

func badRequest(msg string) *requestError {
	return &requestError{code: codeIllegalOp, reason: reasonBadRequest, msg: msg}
}

// ParseRequest parses an RRQ or WRQ packet: opcode, file name, mode, and
// RFC 2347 options, each field NUL-terminated. A name or mode holding a
// NUL splits into more fields than the format allows and is refused, as
// is an unknown mode ("mail" included), a packet that does not end in
// NUL, an option without a value, and a name longer than MaxNameLen.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 2 {
		return Request{}, badRequest("short packet")
	}
	var r Request
	switch binary.BigEndian.Uint16(b) {
	case opRRQ:
	case opWRQ:
		r.Write = true
	default:
		return Request{}, badRequest("not a read or write request")
	}
	rest := b[2:]
	if len(rest) == 0 || rest[len(rest)-1] != 0 {
		return Request{}, badRequest("request fields are not NUL-terminated")
	}
	fields := bytes.Split(rest[:len(rest)-1], []byte{0})
	// Some boot ROMs pad their request with NULs: drop empty trailing
	// fields that cannot be an option's value.
	for len(fields) > 2 && len(fields)%2 != 0 && len(fields[len(fields)-1]) == 0 {
		fields = fields[:len(fields)-1]
	}
	if len(fields) < 2 {
		return Request{}, badRequest("request has no transfer mode")
	}
	if len(fields)%2 != 0 {
		return Request{}, badRequest("option without a value (or a NUL byte inside the name)")
	}
	if len(fields[0]) == 0 {
		return Request{}, badRequest("empty file name")
	}
	if len(fields[0]) > MaxNameLen {
		return Request{}, badRequest("file name longer than " + strconv.Itoa(MaxNameLen) + " bytes")
	}
	r.Name = string(fields[0])
	switch mode := strings.ToLower(string(fields[1])); mode {
	case modeOctet, modeNetascii:
		r.Mode = mode
	default:
		return Request{}, badRequest("unsupported transfer mode " + strconv.Quote(truncate(mode, 32)))
	}
	for i := 2; i+1 < len(fields); i += 2 {
		if len(fields[i]) == 0 {
			continue // padding, or nothing the server could answer
		}
		r.Options = append(r.Options, Option{Name: strings.ToLower(string(fields[i])), Value: string(fields[i+1])})
	}
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// appendError appends an ERROR packet.
func appendError(b []byte, code uint16, msg string) []byte {
	b = binary.BigEndian.AppendUint16(b, opERROR)
	b = binary.BigEndian.AppendUint16(b, code)
	b = append(b, msg...)
	return append(b, 0)
}

// appendOACK appends an OACK packet with the accepted options.
func appendOACK(b []byte, opts []Option) []byte {
	b = binary.BigEndian.AppendUint16(b, opOACK)
	for _, o := range opts {
		b = append(b, o.Name...)
		b = append(b, 0)
		b = append(b, o.Value...)
		b = append(b, 0)
	}
	return b
}

// reply is what a client sent during a transfer: an ACK of a block, or
// an ERROR that ends the transfer.
type reply struct {
	op    uint16
	block uint16 // ACK
	code  uint16 // ERROR
	msg   string // ERROR
}

var errNotReply = errors.New("not an ACK or ERROR packet")

// parseReply reads an ACK or ERROR packet. Anything else is errNotReply:
// the transfer ignores it and keeps waiting.
func parseReply(b []byte) (reply, error) {
	if len(b) < 4 {
		return reply{}, errNotReply
	}
	switch op := binary.BigEndian.Uint16(b); op {
	case opACK:
		return reply{op: op, block: binary.BigEndian.Uint16(b[2:])}, nil
	case opERROR:
		msg := b[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		return reply{op: op, code: binary.BigEndian.Uint16(b[2:]), msg: truncate(string(msg), 128)}, nil
	}
	return reply{}, errNotReply
}
