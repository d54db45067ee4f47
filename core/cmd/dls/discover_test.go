package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// discover records machines as the host's discovery does, first seen a
// minute apart in the order given.
func (h *testHost) discover(macs ...string) {
	h.t.Helper()
	t0 := h.clock.Now().Add(-time.Hour)
	var ms []store.DiscoveredMachine
	for i, m := range macs {
		at := t0.Add(time.Duration(i) * time.Minute)
		ms = append(ms, store.DiscoveredMachine{MAC: m, FirstSeen: at, LastSeen: at.Add(30 * time.Second), Arch: 7,
			VendorClass: "PXEClient:Arch:00007:UNDI:003016", Address: netip.MustParseAddr("192.168.77.1"), Count: int64(i + 2)})
	}
	if _, err := h.store.RecordDiscovered(context.Background(), ms, 0); err != nil {
		h.t.Fatal(err)
	}
}

// interactive runs a command as if a person answered answer at a
// terminal.
func (h *testHost) interactive(answer string, args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	var o, e bytes.Buffer
	c := &cli{stdin: strings.NewReader(answer), stdout: &o, stderr: &e, getenv: func(k string) string { return h.env[k] },
		now: h.clock.Now, interactive: func() bool { return true }}
	code = c.run(context.Background(), args[0], args[1:])
	return o.String(), e.String(), code
}

func TestClientDiscoveredAdopt(t *testing.T) {
	h := newTestHost(t)
	h.login("oscar")
	if out := h.ok("client", "discovered"); strings.TrimSpace(out) != "MAC  FIRST SEEN  LAST SEEN  ARCH  VENDOR CLASS  FROM  COUNT" {
		t.Errorf("empty list:\n%s", out)
	}
	// Recorded in another order than their MACs sort.
	h.discover("52:54:00:00:00:03", "52-54-00-00-00-01", "52:54:00:00:00:02")

	out := h.ok("client", "discovered")
	t.Logf("dls client discovered:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "52:54:00:00:00:03") || !strings.HasPrefix(lines[2], "52:54:00:00:00:01") ||
		!strings.Contains(lines[1], "efi-x64  PXEClient:Arch:00007:UNDI:003016  192.168.77.1  2") {
		t.Errorf("dls client discovered:\n%s", out)
	}
	var ms []apiDiscovered
	if err := json.Unmarshal([]byte(h.ok("client", "discovered", "-o", "json")), &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].MAC != "52:54:00:00:00:03" || ms[1].MAC != "52:54:00:00:00:01" || ms[0].Count != 2 {
		t.Errorf("discovered -o json: %+v", ms)
	}

	// One by MAC, any spelling.
	out = h.ok("client", "adopt", "52-54-00-00-00-01", "--name", "teacher", "--image", "win11", "--label", "room=a")
	t.Logf("dls client adopt 52-54-00-00-00-01 --name teacher --image win11 --label room=a:\n%s", out)
	if out != "52:54:00:00:00:01 adopted as client teacher (image win11); it boots at its next start\n" {
		t.Errorf("adopt: %q", out)
	}
	c, err := h.store.GetClient(context.Background(), "teacher")
	if err != nil || c.MAC != "52:54:00:00:00:01" || c.Labels["room"] != "a" || len(c.CHAPSecret) < 12 || !c.Persistent {
		t.Errorf("adopted client %+v, %v", c, err)
	}

	// The rest by pattern: too few names, bad syntax, then right.
	h.fails(2, `"pc{1..1}" gives 1 names for 2 machines: widen the range`, "client", "adopt", "--all", "--name-pattern", "pc{1..1}", "--image", "win11")
	h.fails(2, "want one {FROM..TO} range", "client", "adopt", "--all", "--name-pattern", "pc[01-30]", "--image", "win11")
	h.fails(2, "adopt needs --image", "client", "adopt", "--all", "--name-pattern", "pc{01..30}")
	h.fails(2, "give a MAC or --all, not both", "client", "adopt", "52:54:00:00:00:02", "--all", "--name-pattern", "pc{01..30}", "--image", "win11")
	h.fails(1, "no discovered machine with MAC 52:54:00:00:00:09", "client", "adopt", "52:54:00:00:00:09", "--name", "x", "--image", "win11")
	out = h.ok("client", "adopt", "--all", "--name-pattern", "pc{01..30}", "--image", "win11", "--label", "room=a")
	t.Logf("dls client adopt --all --name-pattern 'pc{01..30}' --image win11 --label room=a:\n%s", out)
	if out != "52:54:00:00:00:03 adopted as client pc01\n52:54:00:00:00:02 adopted as client pc02\nadopted 2 machines; they boot at their next start\n" {
		t.Errorf("adopt --all: %q", out)
	}
	if out := h.ok("client", "discovered"); len(strings.Split(strings.TrimSpace(out), "\n")) != 1 {
		t.Errorf("discovered after adoption:\n%s", out)
	}
	h.fails(1, "no machine is waiting to be adopted", "client", "adopt", "--all", "--name-pattern", "pc{01..30}", "--image", "win11")
	// Taken names stop --all before anything is adopted.
	h.discover("52:54:00:00:00:04")
	h.fails(1, "client pc01 exists", "client", "adopt", "--all", "--name-pattern", "pc{01..30}", "--image", "win11")
	if _, err := h.store.GetDiscovered(context.Background(), "52:54:00:00:00:04"); err != nil {
		t.Errorf("machine adopted though the name was taken: %v", err)
	}

	// A viewer lists but may not adopt.
	h.login("vera")
	h.ok("client", "discovered")
	h.fails(1, "needs operator", "client", "adopt", "52:54:00:00:00:04", "--name", "pc09", "--image", "win11")
}

func TestExpandPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		n       int
		want    []string
		err     string
	}{
		{"pc{01..30}", 3, []string{"pc01", "pc02", "pc03"}, ""},
		{"pc{1..30}", 2, []string{"pc1", "pc2"}, ""},
		{"lab-{098..100}-a", 3, []string{"lab-098-a", "lab-099-a", "lab-100-a"}, ""},
		{"{8..10}x", 3, []string{"8x", "9x", "10x"}, ""},
		{"pc{01..30}", 30, nil, ""},
		{"pc{01..30}", 31, nil, `"pc{01..30}" gives 30 names for 31 machines`},
		{"pc{5..1}", 1, nil, "the range goes down"},
		{"pc01", 1, nil, "want one {FROM..TO} range"},
		{"pc{01..30}{1..2}", 1, nil, "want one {FROM..TO} range"},
		{"pc{a..z}", 1, nil, "want one {FROM..TO} range"},
		{"PC{01..30}", 1, nil, `"PC01" is no client name`},
		{"pc{0..9999999}", 1, nil, "the range is too large"},
	} {
		got, err := expandPattern(tc.pattern, tc.n)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("expandPattern(%q, %d): err %v, want %q", tc.pattern, tc.n, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("expandPattern(%q, %d): %v", tc.pattern, tc.n, err)
			continue
		}
		if tc.want != nil && !slices.Equal(got, tc.want) {
			t.Errorf("expandPattern(%q, %d) = %q, want %q", tc.pattern, tc.n, got, tc.want)
		}
		if len(got) != tc.n {
			t.Errorf("expandPattern(%q, %d): %d names", tc.pattern, tc.n, len(got))
		}
	}
}

func TestClientRename(t *testing.T) {
	h := newTestHost(t)
	h.login("oscar")
	h.ok("client", "add", "auto-525400000001", "--mac", "52:54:00:00:00:01", "--image", "win11")
	h.ok("client", "add", "pc-02", "--mac", "52:54:00:00:00:02", "--image", "win11")
	out := h.ok("client", "rename", "auto-525400000001", "pc-01")
	if out != "client auto-525400000001 renamed pc-01 (volume auto-525400000001 kept)\n" {
		t.Errorf("rename: %q", out)
	}
	c, err := h.store.GetClient(context.Background(), "pc-01")
	if err != nil || c.VolumeName() != "auto-525400000001" || c.MAC != "52:54:00:00:00:01" {
		t.Errorf("renamed client %+v, %v", c, err)
	}
	if out := h.ok("client", "get", "pc-01"); !strings.Contains(out, "Volume:      auto-525400000001\n") {
		t.Errorf("client get after rename:\n%s", out)
	}
	// Its volume is the one reset.
	h.ok("client", "reset", "pc-01")
	if calls := h.stor.list(); !slices.Contains(calls, "reset auto-525400000001 0") {
		t.Errorf("storage calls %q, want a reset of volume auto-525400000001", calls)
	}
	h.fails(1, "client pc-02 exists", "client", "rename", "pc-01", "pc-02")
	h.fails(2, "missing old and new client names", "client", "rename", "pc-01")
}

func TestClientImport(t *testing.T) {
	h := newTestHost(t)
	h.login("oscar")
	h.ok("client", "add", "pc-09", "--mac", "52:54:00:00:00:09", "--image", "win11", "--address", "10.0.0.9")
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.csv", `name,mac,image,address,labels
pc-01,52:54:00:00:00:01,win11,10.0.0.1,room=a;ring=canary
PC 2,52:54:00:00:00:02,win11
pc-03,zz,win11
pc-04,52:54:00:00:00:01,win11
pc-05,52:54:00:00:00:05,nope
pc-06,52:54:00:00:00:06,win11,10.0.0.9
pc-07,52:54:00:00:00:07,win11,,room
pc-01,52:54:00:00:00:08,win11
pc-09,52:54:00:00:00:10,win11
pc-10,52:54:00:00:00:09
`)
	out, errOut, code := h.dls("", "client", "import", bad)
	for _, want := range []string{
		bad + `:3: name "PC 2": want 1-64`,
		bad + `:4: mac "zz" is not a MAC address`,
		bad + `:5: mac 52:54:00:00:00:01 is on line 2 too`,
		bad + `:6: no image "nope"`,
		bad + `:7: address 10.0.0.9 is reserved for client pc-09`,
		bad + `:8: labels "room": want KEY=VALUE;KEY=VALUE`,
		bad + `:9: name pc-01 is on line 2 too`,
		bad + `:10: client pc-09 exists`,
		bad + `:11: 2 fields, want name,mac,image[,address][,labels]`,
		"no client added",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("import bad.csv: stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != 1 || out != "" {
		t.Errorf("import bad.csv: exit %d, stdout %q", code, out)
	}
	if cs := storedClients(t, h.store); len(cs) != 1 {
		t.Errorf("a bad file added clients: %+v", cs)
	}

	good := write("good.csv", "pc-01, 52-54-00-00-00-01, win11, 10.0.0.1, room=a;ring=canary\n# spare\npc-02,52:54:00:00:00:02,win11\n")
	if out := h.ok("client", "import", good); out != "added 2 clients from "+good+"\n" {
		t.Errorf("import good.csv: %q", out)
	}
	c, err := h.store.GetClient(context.Background(), "pc-01")
	if err != nil || c.MAC != "52:54:00:00:00:01" || c.Address != netip.MustParseAddr("10.0.0.1") ||
		c.Labels["room"] != "a" || c.Labels["ring"] != "canary" || len(c.CHAPSecret) < 12 {
		t.Errorf("imported pc-01 = %+v, %v", c, err)
	}
	h.fails(1, "no clients in the file", "client", "import", write("empty.csv", "name,mac,image\n"))
}

func TestFleetWakeReset(t *testing.T) {
	h := newTestHost(t)
	h.login("oscar")
	for i, room := range []string{"a", "a", "b"} {
		h.ok("client", "add", "pc-0"+string(rune('1'+i)), "--mac", "52:54:00:00:00:0"+string(rune('1'+i)), "--image", "win11", "--label", "room="+room)
	}
	// Not a terminal: no question.
	out := h.ok("client", "wake", "--label", "room=a")
	if !strings.HasSuffix(out, "woke 2 of 2 clients\n") || len(h.waker.list()) != 2 {
		t.Errorf("wake --label room=a: %q, woken %v", out, h.waker.list())
	}
	// A terminal: asked; no stops it.
	out, errOut, code := h.interactive("n\n", "client", "wake", "--all")
	if code != 1 || !strings.Contains(errOut, "wake 3 clients? [y/N] ") || !strings.Contains(errOut, "not confirmed; nothing done") || len(h.waker.list()) != 2 {
		t.Errorf("wake --all, answered n: exit %d, stdout %q, stderr %q, woken %v", code, out, errOut, h.waker.list())
	}
	out, _, code = h.interactive("y\n", "client", "wake", "--all")
	if code != 0 || !strings.HasSuffix(out, "woke 3 of 3 clients\n") || len(h.waker.list()) != 5 {
		t.Errorf("wake --all, answered y: exit %d, %q, woken %v", code, out, h.waker.list())
	}
	out, errOut, code = h.interactive("", "client", "wake", "--all", "--yes")
	if code != 0 || strings.Contains(errOut, "[y/N]") || len(h.waker.list()) != 8 {
		t.Errorf("wake --all --yes: exit %d, %q, %q", code, out, errOut)
	}
	// The single-name form asks nothing.
	if _, errOut, code := h.interactive("", "client", "wake", "pc-03"); code != 0 || errOut != "" {
		t.Errorf("wake pc-03: exit %d, %q", code, errOut)
	}

	out = h.ok("client", "reset", "--label", "room=b", "--version", "1")
	if !strings.Contains(out, "client pc-03: volume pc-03 reset") || !strings.HasSuffix(out, "reset 1 of 1 clients\n") {
		t.Errorf("reset --label room=b: %q", out)
	}
	if _, errOut, _ := h.interactive("no\n", "client", "reset", "--label", "room=a"); !strings.Contains(errOut, "reset the volumes of 2 clients? [y/N]") {
		t.Errorf("reset question: %q", errOut)
	}
	h.fails(1, "no client has label room=z", "client", "wake", "--label", "room=z")
	h.fails(2, "give a client NAME, --label or --all, not several", "client", "wake", "pc-01", "--all")
	h.fails(2, "give --label or --all, not both", "client", "reset", "--all", "--label", "room=a")
	h.fails(2, "missing client name (or --label KEY=VALUE, or --all)", "client", "wake")
	h.fails(2, `unexpected argument "pc-02"`, "client", "wake", "pc-01", "pc-02")
}
