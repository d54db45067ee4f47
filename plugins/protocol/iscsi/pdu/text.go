package pdu

import (
	"errors"
	"strings"
)

// KV is one key=value pair of login or text data, in the order sent.
type KV struct {
	Key   string
	Value string
}

// Limits of text data (RFC 7143 §6.1: keys up to 63 bytes, values up to
// 8192 bytes except where a key allows more).
const (
	MaxKeyLen   = 63
	MaxValueLen = 8192
)

// ErrBadText is returned for text data that is not a list of
// NUL-terminated key=value pairs.
var ErrBadText = errors.New("iscsi: malformed key=value text")

// ParseText splits NUL-terminated key=value pairs. A final pair without
// its NUL is accepted (some initiators pad with NULs instead). Empty
// strings between NULs are skipped.
func ParseText(b []byte) ([]KV, error) {
	var out []KV
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		item := b[:i]
		if i < len(b) {
			b = b[i+1:]
		} else {
			b = nil
		}
		if len(item) == 0 {
			continue
		}
		eq := -1
		for j, c := range item {
			if c == '=' {
				eq = j
				break
			}
		}
		if eq <= 0 || eq > MaxKeyLen || len(item)-eq-1 > MaxValueLen+1024 {
			return out, ErrBadText
		}
		out = append(out, KV{Key: string(item[:eq]), Value: string(item[eq+1:])})
	}
	return out, nil
}

// AppendText appends key=value\0.
func AppendText(dst []byte, key, value string) []byte {
	dst = append(dst, key...)
	dst = append(dst, '=')
	dst = append(dst, value...)
	return append(dst, 0)
}

// EncodeText formats pairs as text data.
func EncodeText(kvs []KV) []byte {
	var b []byte
	for _, kv := range kvs {
		b = AppendText(b, kv.Key, kv.Value)
	}
	return b
}

// Get returns the value of the last pair named key.
func Get(kvs []KV, key string) (string, bool) {
	for i := len(kvs) - 1; i >= 0; i-- {
		if kvs[i].Key == key {
			return kvs[i].Value, true
		}
	}
	return "", false
}

// SplitList splits a comma-separated list value.
func SplitList(v string) []string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}
