package localauth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters (RFC 9106 section 3.1).
type Params struct {
	// Memory is m, in KiB.
	Memory uint32
	// Iterations is t, the number of passes over the memory.
	Iterations uint32
	// Parallelism is p, the number of lanes.
	Parallelism uint8
}

// DefaultParams are RFC 9106's second recommended option (section 4):
// 64 MiB, 3 passes, 4 lanes. See README.md for why.
var DefaultParams = Params{Memory: 64 * 1024, Iterations: 3, Parallelism: 4}

// Sizes of what a new hash stores, and the bounds a stored hash is held to.
const (
	saltLen = 16 // RFC 9106: 128 bits is enough for password hashing
	keyLen  = 32

	minSaltLen = 8
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 64

	// maxMemory bounds m in a stored hash or in the config (4 GiB): a users
	// file edited by hand must not make Verify allocate without limit.
	maxMemory     = 4 * 1024 * 1024
	maxIterations = 64
)

// errMismatch is the result of comparing a password with a hash it does
// not match.
var errMismatch = errors.New("password does not match")

// check reports what is wrong with p, or nil.
func (p Params) check() error {
	switch {
	case p.Parallelism < 1:
		return fmt.Errorf("parallelism %d: must be at least 1", p.Parallelism)
	case p.Memory < 8*uint32(p.Parallelism):
		return fmt.Errorf("memory %d KiB: argon2 needs at least 8 KiB per lane (%d KiB for parallelism %d)", p.Memory, 8*uint32(p.Parallelism), p.Parallelism)
	case p.Memory > maxMemory:
		return fmt.Errorf("memory %d KiB: more than the %d KiB limit", p.Memory, maxMemory)
	case p.Iterations < 1 || p.Iterations > maxIterations:
		return fmt.Errorf("iterations %d: must be from 1 to %d", p.Iterations, maxIterations)
	}
	return nil
}

// weak reports whether p costs less than the weakest of OWASP's argon2id
// configurations (7 MiB with 5 passes ... 46 MiB with 1 pass).
func (p Params) weak() bool {
	return p.Memory < 7*1024 || uint64(p.Memory)*uint64(p.Iterations) < 7*1024*5
}

// String is the parameter field of the PHC string: "m=65536,t=3,p=4".
func (p Params) String() string {
	return fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Iterations, p.Parallelism)
}

// Hash is a parsed argon2id hash.
type Hash struct {
	Params Params
	Salt   []byte
	Key    []byte
}

// NewHash hashes password with a new random salt.
func NewHash(password string, p Params) (Hash, error) {
	if err := p.check(); err != nil {
		return Hash{}, err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return Hash{}, fmt.Errorf("read random salt: %w", err)
	}
	return Hash{Params: p, Salt: salt, Key: derive(password, salt, p, keyLen)}, nil
}

func derive(password string, salt []byte, p Params, n int) []byte {
	return argon2.IDKey([]byte(password), salt, p.Iterations, p.Memory, p.Parallelism, uint32(n))
}

// Compare returns nil if password matches h, errMismatch if it does not.
// It always does the full work of one hash with h's parameters and compares
// in constant time.
func (h Hash) Compare(password string) error {
	got := derive(password, h.Salt, h.Params, len(h.Key))
	if subtle.ConstantTimeCompare(got, h.Key) != 1 {
		return errMismatch
	}
	return nil
}

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// String encodes h in the PHC string format:
//
//	$argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>
func (h Hash) String() string {
	return "$argon2id$v=" + strconv.Itoa(argon2.Version) + "$" + h.Params.String() +
		"$" + b64.EncodeToString(h.Salt) + "$" + b64.EncodeToString(h.Key)
}

// ParseHash parses an argon2id hash in the PHC string format. It accepts
// only argon2id version 19 (0x13), parameters in the order m, t, p, and
// sizes and costs within bounds, so that a damaged or hostile users file
// cannot make Verify allocate gigabytes or compare against an empty key.
func ParseHash(s string) (Hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return Hash{}, errors.New("not a PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash)")
	}
	if parts[1] != "argon2id" {
		return Hash{}, fmt.Errorf("algorithm %q: only argon2id is supported", parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Hash{}, fmt.Errorf("version %q: only v=%d is supported", parts[2], argon2.Version)
	}
	p, err := parseParams(parts[3])
	if err != nil {
		return Hash{}, err
	}
	salt, err := b64.Strict().DecodeString(parts[4])
	if err != nil {
		return Hash{}, fmt.Errorf("salt: %w", err)
	}
	if len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return Hash{}, fmt.Errorf("salt of %d bytes: want %d to %d", len(salt), minSaltLen, maxSaltLen)
	}
	key, err := b64.Strict().DecodeString(parts[5])
	if err != nil {
		return Hash{}, fmt.Errorf("hash: %w", err)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return Hash{}, fmt.Errorf("hash of %d bytes: want %d to %d", len(key), minKeyLen, maxKeyLen)
	}
	return Hash{Params: p, Salt: salt, Key: key}, nil
}

// parseParams parses "m=65536,t=3,p=4".
func parseParams(s string) (Params, error) {
	fields := strings.Split(s, ",")
	if len(fields) != 3 {
		return Params{}, fmt.Errorf("parameters %q: want m=<KiB>,t=<passes>,p=<lanes>", s)
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(fields[i], name+"=")
		if !ok {
			return Params{}, fmt.Errorf("parameters %q: want m=<KiB>,t=<passes>,p=<lanes>", s)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || (len(v) > 1 && v[0] == '0') {
			return Params{}, fmt.Errorf("parameter %s=%q: not a number", name, v)
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return Params{}, fmt.Errorf("parameter p=%d: at most 255 lanes are supported", vals[2])
	}
	p := Params{Memory: uint32(vals[0]), Iterations: uint32(vals[1]), Parallelism: uint8(vals[2])}
	if err := p.check(); err != nil {
		return Params{}, err
	}
	return p, nil
}
