package bootclient

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/dls-project/dls/sdk/host"
)

func TestArchesOf(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want []uint16
		ok   bool
	}{
		{"bios", []uint16{ArchBIOS}, true},
		{"efi_x64", []uint16{ArchEFIX64, ArchEFIBC, ArchEFIX64HTTP, ArchEFIBCHTTP}, true},
		{"efi_arm64", []uint16{ArchEFIARM64, ArchEFIARM64HTTP}, true},
		{"22", []uint16{22}, true},
		{"65536", nil, false},
		{"efi-x64", nil, false},
		{"", nil, false},
	} {
		got, ok := ArchesOf(tc.key)
		if ok != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("ArchesOf(%q) = %v %v, want %v %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDefaultBootFileAndBuiltin(t *testing.T) {
	for arch, want := range map[uint16]string{
		ArchBIOS: "undionly.kpxe", ArchEFIX64: "ipxe.efi", ArchEFIX64HTTP: "ipxe.efi", ArchEFIIA32: "ipxe.efi",
		ArchEFIARM64: "snp.efi", ArchEFIARM32HTTP: "snp.efi", ArchUnknownOrNone: "undionly.kpxe",
	} {
		if got := DefaultBootFile(arch); got != want {
			t.Errorf("DefaultBootFile(%d) = %q, want %q", arch, got, want)
		}
		if !Builtin(DefaultBootFile(arch)) {
			t.Errorf("default %q not builtin", DefaultBootFile(arch))
		}
	}
	if Builtin("shimx64.efi") || Builtin("") {
		t.Error("Builtin says yes to a client's own file")
	}
}

func TestArchClasses(t *testing.T) {
	for a := uint16(0); a < 25; a++ {
		if got, want := HTTPArch(a), a >= 15 && a <= 20; got != want {
			t.Errorf("HTTPArch(%d) = %v", a, got)
		}
		if got, want := ShimArch(a), a == 7 || a == 9 || a == 16 || a == 17; got != want {
			t.Errorf("ShimArch(%d) = %v", a, got)
		}
	}
}

func TestVendorArch(t *testing.T) {
	for _, tc := range []struct {
		vc   string
		want uint16
		ok   bool
	}{
		{"PXEClient:Arch:00007:UNDI:003016", 7, true},
		{"HTTPClient:Arch:00016:UNDI:003001", 16, true},
		{"HTTPClient:Arch:00019", 19, true},
		{"HTTPClient:Arch:x0016", 0, false},
		{"PXEClient:Arch:0000", 0, false},
		{"PXEClient:Arch:abcde", 0, false},
		{"PXEClient:Arch:99999", 0, false},
		{"PXEClient", 0, false},
		{"MSFT 5.0", 0, false},
	} {
		got, ok := VendorArch(tc.vc)
		if got != tc.want || ok != tc.ok {
			t.Errorf("VendorArch(%q) = %d %v, want %d %v", tc.vc, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"iPXE":                   "iPXE",
		"a\x00b":                 "a?b",
		"name\x00\x00":           "name",
		"\xff":                   "",
		strings.Repeat("x", 300): strings.Repeat("x", 255),
	} {
		if got := Printable([]byte(in)); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEventAttrs(t *testing.T) {
	if got := EventAttrs("", "", ArchUnknownOrNone); got != nil {
		t.Errorf("nothing said: %v, want nil", got)
	}
	got := EventAttrs("PXEClient:Arch:00007", "iPXE", ArchEFIX64)
	want := map[string]string{host.AttrVendorClass: "PXEClient:Arch:00007", host.AttrUserClass: "iPXE", host.AttrArch: "7"}
	if !maps.Equal(got, want) {
		t.Errorf("EventAttrs = %v, want %v", got, want)
	}
	if got := EventAttrs("", "", ArchBIOS); got[host.AttrArch] != "0" || len(got) != 1 {
		t.Errorf("BIOS arch only: %v, want arch 0", got)
	}
}
