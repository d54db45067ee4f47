package store

import (
	"errors"
	"testing"
	"time"
)

func TestSessionFilterNormalize(t *testing.T) {
	for limit, want := range map[int]int{
		-5: DefaultSessionLimit, 0: DefaultSessionLimit, 1: 1, 250: 250,
		MaxSessionLimit: MaxSessionLimit, MaxSessionLimit + 1: MaxSessionLimit,
	} {
		if got := (SessionFilter{Client: "pc-01", Limit: limit}).Normalize(); got.Limit != want || got.Client != "pc-01" {
			t.Errorf("Limit %d normalized to %+v, want limit %d", limit, got, want)
		}
	}
}

func TestSessionNormalize(t *testing.T) {
	s, err := Session{MAC: "52-54-00-AA-BB-01", Stages: map[string]time.Time{}}.Normalize()
	if err != nil || s.MAC != "52:54:00:aa:bb:01" || s.State != SessionActive || s.Stages != nil {
		t.Errorf("Normalize = %+v, %v", s, err)
	}
	if s, err := (Session{}).Normalize(); err != nil || s.MAC != "" {
		t.Errorf("Normalize without MAC = %+v, %v", s, err)
	}
	for _, bad := range []Session{{MAC: "zz"}, {State: "lost"}} {
		if _, err := bad.Normalize(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestRefreshTokenNormalize(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	if tok, err := (RefreshToken{Hash: "h", User: "u", Expires: exp, Groups: []string{}}).Normalize(); err != nil || tok.Groups != nil {
		t.Errorf("Normalize = %+v, %v", tok, err)
	}
	for _, bad := range []RefreshToken{{User: "u", Expires: exp}, {Hash: "h", User: " ", Expires: exp}, {Hash: "h", User: "u"}} {
		if _, err := bad.Normalize(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestImageNormalize(t *testing.T) {
	if _, err := (Image{Name: "lab"}).Normalize(); err != nil {
		t.Errorf("Normalize(lab): %v", err)
	}
	if _, err := (Image{Name: "  "}).Normalize(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Normalize(no name): err = %v, want ErrInvalid", err)
	}
}
