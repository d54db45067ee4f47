package main

// Discovery and enrolment: dls client discovered, adopt, rename, import.

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// apiDiscovered is a discovered machine as the API shows it.
type apiDiscovered struct {
	MAC         string    `json:"mac"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Arch        uint16    `json:"arch"`
	VendorClass string    `json:"vendor_class,omitempty"`
	UserClass   string    `json:"user_class,omitempty"`
	Address     string    `json:"address,omitempty"`
	Count       int64     `json:"count"`
}

func clientDiscovered() *command {
	return &command{
		name: "discovered", api: true,
		summary: "List machines that asked to boot and are no clients",
		help: `With boot.unknown_clients = "discover", boot firmware of an unknown MAC gets
no boot and is listed here, oldest first: adopt makes it a client.
`,
		example: "dls client discovered -o json",
		run: func(ctx context.Context, c *cli, _ []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", "/discovered", nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var ms []apiDiscovered
			if err := json.Unmarshal(b, &ms); err != nil {
				return fmt.Errorf("decode discovered machines: %w", err)
			}
			rows := make([][]string, len(ms))
			for i, m := range ms {
				rows[i] = []string{m.MAC, when(m.FirstSeen), when(m.LastSeen), archName(m.Arch, m.VendorClass),
					m.VendorClass, m.Address, strconv.FormatInt(m.Count, 10)}
			}
			return c.table("MAC\tFIRST SEEN\tLAST SEEN\tARCH\tVENDOR CLASS\tFROM\tCOUNT", rows)
		},
	}
}

// archName names DHCP option 93; "" when the machine did not say.
func archName(arch uint16, vendorClass string) string {
	if vendorClass == "" && arch == 0 {
		return ""
	}
	switch arch {
	case 0:
		return "bios"
	case 6:
		return "efi-ia32"
	case 7, 9:
		return "efi-x64"
	case 10:
		return "efi-arm32"
	case 11:
		return "efi-arm64"
	case 16:
		return "efi-x64-http"
	}
	return strconv.Itoa(int(arch))
}

func clientAdopt() *command {
	var (
		name, pattern, image, address string
		labels                        listFlag
		all, persistent               bool
	)
	return &command{
		name: "adopt", args: "MAC --name NAME --image IMAGE | --all --name-pattern PATTERN --image IMAGE", optArgs: 1, what: "MAC", api: true,
		summary: "Make discovered machines clients; their next boot works",
		help: `--all adopts every discovered machine in order of first sight, named from
--name-pattern: one {FROM..TO} range, zero-padded as written ('pc{01..30}'
gives pc01 ... pc30). Each new client gets a generated CHAP secret.
`,
		example: "dls client adopt --all --name-pattern 'pc{01..30}' --image win11 --label room=a",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&name, "name", "", "`NAME` name of the new client")
			fs.StringVar(&pattern, "name-pattern", "", "`PATTERN` names for --all, such as 'pc{01..30}'")
			fs.StringVar(&image, "image", "", "`IMAGE` image the clients boot")
			fs.StringVar(&address, "address", "", "`IPV4` address reserved for the client (not with --all)")
			fs.Var(&labels, "label", "`KEY=VALUE` tag (repeat for more)")
			fs.BoolVar(&all, "all", false, "adopt every discovered machine")
			fs.BoolVar(&persistent, "persistent", true, "keep the clients' volumes across boots")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			switch {
			case image == "":
				return usagef("adopt needs --image")
			case all && len(args) > 0:
				return usagef("give a MAC or --all, not both")
			case all && (name != "" || address != ""):
				return usagef("--all names the clients with --name-pattern (no --name, --address)")
			case all && pattern == "":
				return usagef("--all needs --name-pattern, such as 'pc{01..30}'")
			case !all && len(args) == 0:
				return usagef("missing MAC (or --all)")
			case !all && name == "":
				return usagef("adopt needs --name")
			case !all && pattern != "":
				return usagef("--name-pattern goes with --all")
			}
			ls, err := parseLabels(labels)
			if err != nil {
				return err
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			body := func(n string) map[string]any {
				return map[string]any{"name": n, "image": image, "address": address, "persistent": persistent, "labels": ls}
			}
			if !all {
				b, err := conn.call(ctx, "POST", "/discovered/"+url.PathEscape(args[0])+"/adopt", body(name))
				if err != nil || c.api.json() {
					return c.raw(b, err)
				}
				var cl apiClient
				if err := json.Unmarshal(b, &cl); err != nil {
					return fmt.Errorf("decode client: %w", err)
				}
				fmt.Fprintf(c.stdout, "%s adopted as client %s (image %s); it boots at its next start\n", cl.MAC, cl.Name, cl.Image)
				return nil
			}
			return c.adoptAll(ctx, conn, pattern, body)
		},
	}
}

// adoptAll adopts every discovered machine, in order of first sight, with
// the names of pattern. Names already taken stop it before anything is
// adopted.
func (c *cli) adoptAll(ctx context.Context, conn *apiConn, pattern string, body func(string) map[string]any) error {
	b, err := conn.call(ctx, "GET", "/discovered", nil)
	if err != nil {
		return err
	}
	var ms []apiDiscovered
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("decode discovered machines: %w", err)
	}
	if len(ms) == 0 {
		return errors.New("no machine is waiting to be adopted (dls client discovered)")
	}
	names, err := expandPattern(pattern, len(ms))
	if err != nil {
		return usagef("--name-pattern: %v", err)
	}
	taken, err := c.clientNames(ctx, conn)
	if err != nil {
		return err
	}
	for _, n := range names {
		if taken[n] {
			return fmt.Errorf("client %s exists: pick a pattern whose names are free; nothing adopted", n)
		}
	}
	var out []json.RawMessage
	for i, m := range ms {
		b, err := conn.call(ctx, "POST", "/discovered/"+m.MAC+"/adopt", body(names[i]))
		if err != nil {
			return fmt.Errorf("adopt %s as %s: %w (%d of %d adopted before it)", m.MAC, names[i], err, i, len(ms))
		}
		if c.api.json() {
			out = append(out, b)
			continue
		}
		fmt.Fprintf(c.stdout, "%s adopted as client %s\n", m.MAC, names[i])
	}
	if c.api.json() {
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		c.printJSON(b)
		return nil
	}
	fmt.Fprintf(c.stdout, "adopted %d machines; they boot at their next start\n", len(ms))
	return nil
}

// listClients is GET clients, decoded.
func listClients(ctx context.Context, conn *apiConn) ([]apiClient, error) {
	b, err := conn.call(ctx, "GET", "/clients", nil)
	if err != nil {
		return nil, fmt.Errorf("read the clients: %w", err)
	}
	var cs []apiClient
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("decode clients: %w", err)
	}
	return cs, nil
}

// clientNames is the set of the clients' names.
func (c *cli) clientNames(ctx context.Context, conn *apiConn) (map[string]bool, error) {
	cs, err := listClients(ctx, conn)
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(cs))
	for _, cl := range cs {
		m[cl.Name] = true
	}
	return m, nil
}

// patternRE is a name pattern: text, one {FROM..TO} range, text.
var patternRE = regexp.MustCompile(`^([^{}]*)\{([0-9]+)\.\.([0-9]+)\}([^{}]*)$`)

// maxPatternNames bounds what one pattern expands to.
const maxPatternNames = 100000

// expandPattern returns the first n names of pattern: 'pc{01..30}' is
// pc01 ... pc30, zero-padded to the width of FROM when FROM has a leading
// zero (or of TO when both have the same width). An error when the
// pattern is malformed or gives fewer than n names.
func expandPattern(pattern string, n int) ([]string, error) {
	m := patternRE.FindStringSubmatch(pattern)
	if m == nil {
		return nil, fmt.Errorf("%q: want one {FROM..TO} range of numbers, such as 'pc{01..30}'", pattern)
	}
	prefix, from, to, suffix := m[1], m[2], m[3], m[4]
	lo, err1 := strconv.Atoi(from)
	hi, err2 := strconv.Atoi(to)
	if err1 != nil || err2 != nil || hi-lo >= maxPatternNames {
		return nil, fmt.Errorf("%q: the range is too large (at most %d names)", pattern, maxPatternNames)
	}
	if lo > hi {
		return nil, fmt.Errorf("%q: the range goes down (%s > %s)", pattern, from, to)
	}
	width := 0
	if len(from) > 1 && from[0] == '0' || len(from) == len(to) {
		width = len(from)
	}
	if count := hi - lo + 1; count < n {
		return nil, fmt.Errorf("%q gives %d names for %d machines: widen the range", pattern, count, n)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%0*d%s", prefix, width, lo+i, suffix)
		if !clientNameRE.MatchString(names[i]) {
			return nil, fmt.Errorf("%q: %q is no client name (1-64 of a-z 0-9 . -, starting with a letter or digit)", pattern, names[i])
		}
	}
	return names, nil
}

// clientNameRE is what the API takes as a client name.
var clientNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,63}$`)

func clientRename() *command {
	return &command{
		name: "rename", args: "OLD NEW", nargs: 2, what: "old and new client names", api: true,
		summary: "Rename a client; it keeps its volume",
		help: `The volume keeps the name it was made under (dls client get shows it).
Refused while the machine boots or runs, and for clients declared in the
config file (rename the block there).
`,
		example: "dls client rename auto-525400a1b2c3 pc-07",
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "POST", clientPath(args[0])+"/rename", map[string]string{"name": args[1]})
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var cl apiClient
			if err := json.Unmarshal(b, &cl); err != nil {
				return fmt.Errorf("decode client: %w", err)
			}
			fmt.Fprintf(c.stdout, "client %s renamed %s (volume %s kept)\n", args[0], cl.Name, volumeOf(cl))
			return nil
		},
	}
}

// importLine is one client of an import file, with its line number.
type importLine struct {
	line int
	in   clientInput
}

func clientImport() *command {
	var persistent bool
	return &command{
		name: "import", args: "FILE.csv", nargs: 1, what: "CSV file", api: true,
		summary: "Add the clients of a CSV file: all of them or none",
		help: `Each line is name,mac,image[,address][,labels], labels as room=a;ring=canary;
a first line starting name,mac is a header. Every line is checked (names,
MACs and addresses free, images known) before any client is made, and each
bad line is named; a failure while adding removes those added.
`,
		example: "dls client import lab-a.csv",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&persistent, "persistent", true, "keep the clients' volumes across boots")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open %s: %w", args[0], err)
			}
			defer f.Close()
			lines, bad := parseImport(f, args[0], persistent)
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			bad = append(bad, c.checkImport(ctx, conn, args[0], lines)...)
			if len(bad) > 0 {
				for _, e := range bad {
					fmt.Fprintln(c.stderr, e)
				}
				return fmt.Errorf("%d problems in %s; no client added", len(bad), args[0])
			}
			var added []string
			for _, l := range lines {
				if _, err := conn.call(ctx, "POST", "/clients", l.in); err != nil {
					for _, n := range added {
						if _, derr := conn.call(ctx, "DELETE", clientPath(n), nil); derr != nil {
							fmt.Fprintf(c.stderr, "client %s not removed: %v\n", n, derr)
						}
					}
					return fmt.Errorf("%s:%d: add client %s: %w; the %d added before it were removed", args[0], l.line, l.in.Name, err, len(added))
				}
				added = append(added, l.in.Name)
			}
			if !c.api.json() {
				fmt.Fprintf(c.stdout, "added %d clients from %s\n", len(added), args[0])
			}
			return nil
		},
	}
}

// parseImport reads the lines of an import file; bad lines are errors
// naming FILE:LINE.
func parseImport(r io.Reader, file string, persistent bool) ([]importLine, []string) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	var out []importLine
	var bad []string
	names, macs, addrs := map[string]int{}, map[string]int{}, map[string]int{}
	for first := true; ; first = false {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad = append(bad, fmt.Sprintf("%s:%d: %v", file, pe.Line, pe.Err))
				continue
			}
			bad = append(bad, fmt.Sprintf("%s: %v", file, err))
			break
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if first && len(rec) >= 2 && strings.EqualFold(rec[0], "name") && strings.EqualFold(rec[1], "mac") {
			continue
		}
		badf := func(format string, args ...any) {
			bad = append(bad, fmt.Sprintf("%s:%d: %s", file, line, fmt.Sprintf(format, args...)))
		}
		if len(rec) < 3 || len(rec) > 5 {
			badf("%d fields, want name,mac,image[,address][,labels]", len(rec))
			continue
		}
		in := clientInput{Name: rec[0], Image: rec[2], Persistent: persistent}
		ok := true
		if !clientNameRE.MatchString(in.Name) {
			badf("name %q: want 1-64 of a-z 0-9 . -, starting with a letter or digit", in.Name)
			ok = false
		} else if prev, dup := names[in.Name]; dup {
			badf("name %s is on line %d too", in.Name, prev)
			ok = false
		}
		if hw, err := net.ParseMAC(rec[1]); err != nil || len(hw) != 6 {
			badf("mac %q is not a MAC address such as aa:bb:cc:dd:ee:ff", rec[1])
			ok = false
		} else if in.MAC = hw.String(); macs[in.MAC] > 0 {
			badf("mac %s is on line %d too", in.MAC, macs[in.MAC])
			ok = false
		}
		if in.Image == "" {
			badf("no image")
			ok = false
		}
		if len(rec) >= 4 && rec[3] != "" {
			if a, err := netip.ParseAddr(rec[3]); err != nil || !a.Is4() {
				badf("address %q is not an IPv4 address", rec[3])
				ok = false
			} else if in.Address = a.String(); addrs[in.Address] > 0 {
				badf("address %s is on line %d too", in.Address, addrs[in.Address])
				ok = false
			}
		}
		if len(rec) == 5 && rec[4] != "" {
			ls, err := parseLabels(strings.Split(rec[4], ";"))
			if err != nil {
				badf("labels %q: want KEY=VALUE;KEY=VALUE", rec[4])
				ok = false
			}
			in.Labels = ls
		}
		if !ok {
			continue
		}
		names[in.Name], macs[in.MAC] = line, line
		if in.Address != "" {
			addrs[in.Address] = line
		}
		out = append(out, importLine{line: line, in: in})
	}
	if len(out) == 0 && len(bad) == 0 {
		bad = append(bad, file+": no clients in the file")
	}
	return out, bad
}

// checkImport checks the lines against the host: names, MACs and
// addresses not taken by a client, images known.
func (c *cli) checkImport(ctx context.Context, conn *apiConn, file string, lines []importLine) []string {
	cs, err := listClients(ctx, conn)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", file, err)}
	}
	b, err := conn.call(ctx, "GET", "/images", nil)
	if err != nil {
		return []string{fmt.Sprintf("%s: read the images: %v", file, err)}
	}
	var ims []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &ims); err != nil {
		return []string{fmt.Sprintf("%s: decode images: %v", file, err)}
	}
	images := map[string]bool{}
	for _, im := range ims {
		images[im.Name] = true
	}
	byName, byMAC, byAddr := map[string]bool{}, map[string]string{}, map[string]string{}
	for _, cl := range cs {
		byName[cl.Name] = true
		byMAC[cl.MAC] = cl.Name
		if cl.Address != "" {
			byAddr[cl.Address] = cl.Name
		}
	}
	var bad []string
	for _, l := range lines {
		badf := func(format string, args ...any) {
			bad = append(bad, fmt.Sprintf("%s:%d: %s", file, l.line, fmt.Sprintf(format, args...)))
		}
		if byName[l.in.Name] {
			badf("client %s exists", l.in.Name)
		}
		if other, ok := byMAC[l.in.MAC]; ok {
			badf("mac %s belongs to client %s", l.in.MAC, other)
		}
		if other, ok := byAddr[l.in.Address]; ok && l.in.Address != "" {
			badf("address %s is reserved for client %s", l.in.Address, other)
		}
		if !images[l.in.Image] {
			badf("no image %q (dls image list shows them)", l.in.Image)
		}
	}
	return bad
}
