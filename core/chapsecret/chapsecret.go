// Package chapsecret makes and checks the iSCSI CHAP secrets of clients.
//
// CHAP is on for every client: one without a secret of its own (a chap
// block in dls.hcl, or one set through the API) gets a generated one,
// stored in the state store and kept until an admin rotates it (dls client
// chap NAME --rotate). Generated secrets use [A-Za-z0-9] only because they
// go unquoted into iPXE scripts, kernel command lines and libiscsi URLs.
package chapsecret

import (
	"crypto/rand"
	"fmt"
)

const (
	// MinLength is the shortest secret an admin may set: shorter ones are
	// open to offline guessing from one sniffed CHAP exchange.
	MinLength = 12
	// MaxLength is the longest secret accepted (RFC 7143 CHAP_C and CHAP_R
	// carry at most 1024 bytes; initiators commonly stop far below that).
	MaxLength = 255
	// GeneratedLength is the length of a generated secret: 24 characters
	// of 62 symbols are about 143 bits.
	GeneratedLength = 24
)

// alphabet is what generated secrets are made of. 62 symbols: bytes are
// drawn from crypto/rand and those >= 248 (4*62) are dropped, so every
// symbol is equally likely.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Generate returns a new secret of GeneratedLength characters from
// crypto/rand over [A-Za-z0-9].
func Generate() (string, error) {
	out := make([]byte, 0, GeneratedLength)
	buf := make([]byte, 2*GeneratedLength)
	for len(out) < GeneratedLength {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generate CHAP secret: %w", err)
		}
		for _, b := range buf {
			if int(b) >= 4*len(alphabet) {
				continue
			}
			out = append(out, alphabet[int(b)%len(alphabet)])
			if len(out) == GeneratedLength {
				break
			}
		}
	}
	return string(out), nil
}

// Check reports why secret cannot be used as a CHAP secret an admin sets
// (what names it: "secret", "mutual_secret"), or nil.
func Check(what, secret string) error {
	switch {
	case len(secret) < MinLength:
		return fmt.Errorf("%s is %d characters long; CHAP secrets need at least %d", what, len(secret), MinLength)
	case len(secret) > MaxLength:
		return fmt.Errorf("%s is %d characters long; CHAP secrets may have at most %d", what, len(secret), MaxLength)
	}
	return nil
}
