package localauth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxNameLen bounds user and group names.
const maxNameLen = 64

// maxPasswordBytes bounds a password's length: argon2 takes any length,
// but a megabyte "password" is an attack, not a password.
const maxPasswordBytes = 1024

// DefaultMinPasswordLength is min_password_length's default, in characters.
const DefaultMinPasswordLength = 12

// checkName reports what is wrong with a user or group name: 1 to 64 of
// a-z, 0-9, ".", "_" and "-".
func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name %q is longer than %d characters", name, maxNameLen)
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("name %q: only a-z, 0-9, \".\", \"_\" and \"-\" are allowed", name)
		}
	}
	return nil
}

// checkPassword applies the password policy to a new password.
func checkPassword(username, password string, minLen int) error {
	n := utf8.RuneCountInString(password)
	switch {
	case n < minLen:
		return fmt.Errorf("password of user %q is too short: %d characters, at least %d required", username, n, minLen)
	case len(password) > maxPasswordBytes:
		return fmt.Errorf("password of user %q is too long: more than %d bytes", username, maxPasswordBytes)
	case strings.EqualFold(password, username):
		return fmt.Errorf("password of user %q must not be the user name", username)
	}
	return nil
}

// cleanGroups checks group names and returns them sorted, without
// duplicates; never nil.
func cleanGroups(groups []string) ([]string, error) {
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		if err := checkName(g); err != nil {
			return nil, fmt.Errorf("group: %w", err)
		}
		out = append(out, g)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
