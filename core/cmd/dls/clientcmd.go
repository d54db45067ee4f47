package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// apiClient is a client as the API shows it.
type apiClient struct {
	Name       string            `json:"name"`
	MAC        string            `json:"mac"`
	Image      string            `json:"image"`
	Address    string            `json:"address,omitempty"`
	Initiators []string          `json:"initiators,omitempty"`
	Extra      []string          `json:"extra_addresses,omitempty"`
	Persistent bool              `json:"persistent"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Volume is a renamed client's volume (the name it was made under).
	Volume    string    `json:"volume,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// clientInput is a client as the API takes it (without secrets: the API
// generates one for a new client and keeps it on PUT).
type clientInput struct {
	Name       string            `json:"name"`
	MAC        string            `json:"mac"`
	Image      string            `json:"image"`
	Address    string            `json:"address,omitempty"`
	Initiators []string          `json:"initiators,omitempty"`
	Extra      []string          `json:"extra_addresses,omitempty"`
	Persistent bool              `json:"persistent"`
	Labels     map[string]string `json:"labels,omitempty"`
}

func clientCommand() *command {
	return &command{
		name:    "client",
		summary: "Manage clients: the machines this host boots",
		sub: []*command{clientList(), clientGet(), clientAdd(), clientSet(), clientCHAP(), clientDelete(), clientReset(), clientWake(),
			clientDiscovered(), clientAdopt(), clientRename(), clientImport(), clientFloor(), clientMaintenance()},
	}
}

// clientPath is the API path of client name.
func clientPath(name string) string { return "/clients/" + url.PathEscape(name) }

// clientFlags are the flags of add and set.
type clientFlags struct {
	mac, image, address       string
	initiators, labels, extra listFlag
	persistent                bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mac, "mac", "", "`MAC` MAC address of the boot NIC")
	fs.StringVar(&f.image, "image", "", "`IMAGE` image the client boots")
	fs.StringVar(&f.address, "address", "", "`IPV4` IPv4 address reserved for the client")
	fs.Var(&f.initiators, "initiator", "extra iSCSI initiator `IQN` allowed to log in as the client (repeat for more)")
	fs.BoolVar(&f.persistent, "persistent", true, "keep the client's volume across boots")
	fs.Var(&f.labels, "label", "`KEY=VALUE` tag (repeat for more)")
	fs.Var(&f.extra, "extra-address", "`IP` address the client's extra initiators may log in from (repeat for more)")
}

func clientList() *command {
	return &command{
		name: "list", api: true,
		summary: "List clients",
		example: "dls client list -o json",
		run: func(ctx context.Context, c *cli, _ []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", "/clients", nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var cs []apiClient
			if err := json.Unmarshal(b, &cs); err != nil {
				return fmt.Errorf("decode clients: %w", err)
			}
			rows := make([][]string, len(cs))
			for i, cl := range cs {
				rows[i] = []string{cl.Name, cl.MAC, cl.Image, cl.Address, yesNo(cl.Persistent), strings.Join(cl.Initiators, ",")}
			}
			return c.table("NAME\tMAC\tIMAGE\tADDRESS\tPERSISTENT\tINITIATORS", rows)
		},
	}
}

func clientGet() *command {
	return &command{
		name: "get", args: "NAME", nargs: 1, what: "client name", api: true,
		summary: "Show a client",
		example: "dls client get pc-01",
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", clientPath(args[0]), nil)
			return c.showClient(b, err)
		},
	}
}

func clientAdd() *command {
	var f clientFlags
	return &command{
		name: "add", args: "NAME --mac MAC --image IMAGE", nargs: 1, what: "client name", api: true,
		summary: "Add a client; the host generates its CHAP secret",
		help:    "Secrets are never shown: add generates one (dls client chap changes it).\n",
		example: "dls client add pc-01 --mac aa:bb:cc:dd:ee:01 --image win11 --address 10.0.0.11",
		flags:   f.register,
		run: func(ctx context.Context, c *cli, args []string) error {
			if f.mac == "" || f.image == "" {
				return usagef("add needs --mac and --image")
			}
			labels, err := parseLabels(f.labels)
			if err != nil {
				return err
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			in := clientInput{Name: args[0], MAC: f.mac, Image: f.image, Address: f.address, Initiators: f.initiators, Extra: f.extra, Persistent: f.persistent, Labels: labels}
			b, err := conn.call(ctx, "POST", "/clients", in)
			return c.showClient(b, err)
		},
	}
}

func clientSet() *command {
	var (
		f clientFlags
		// fs tells which flags were given: set changes only those.
		fs *flag.FlagSet
	)
	return &command{
		name: "set", args: "NAME [--mac MAC] [--image IMAGE] [--address IPV4|'']...", nargs: 1, what: "client name", api: true,
		summary: "Change the flags given of a client",
		help: `set changes only the flags given (--initiator, --extra-address and --label
replace the whole list; '' clears it) and keeps the client's CHAP secret.
`,
		example: "dls client set pc-01 --persistent=false --label room=b12",
		flags: func(s *flag.FlagSet) {
			fs = s
			f.register(s)
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			set := given(fs)
			if !slices.ContainsFunc([]string{"mac", "image", "address", "initiator", "extra-address", "persistent", "label"}, func(n string) bool { return set[n] }) {
				return usagef("set: give at least one of --mac, --image, --address, --initiator, --extra-address, --persistent, --label")
			}
			labels, err := parseLabels(f.labels)
			if err != nil {
				return err
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			path := clientPath(args[0])
			b, err := conn.call(ctx, "GET", path, nil)
			if err != nil {
				return err
			}
			var cur apiClient
			if err := json.Unmarshal(b, &cur); err != nil {
				return fmt.Errorf("decode client: %w", err)
			}
			in := clientInput{Name: cur.Name, MAC: cur.MAC, Image: cur.Image, Address: cur.Address, Initiators: cur.Initiators, Extra: cur.Extra, Persistent: cur.Persistent, Labels: cur.Labels}
			if set["mac"] {
				in.MAC = f.mac
			}
			if set["image"] {
				in.Image = f.image
			}
			if set["address"] {
				in.Address = f.address
			}
			if set["persistent"] {
				in.Persistent = f.persistent
			}
			if set["initiator"] {
				in.Initiators = slices.DeleteFunc(slices.Clone(f.initiators), func(s string) bool { return s == "" })
			}
			if set["extra-address"] {
				in.Extra = slices.DeleteFunc(slices.Clone(f.extra), func(s string) bool { return s == "" })
			}
			if set["label"] {
				in.Labels = labels
			}
			b, err = conn.call(ctx, "PUT", path, in)
			return c.showClient(b, err)
		},
	}
}

func clientCHAP() *command {
	var rotate, secretStdin bool
	return &command{
		name: "chap", args: "NAME --rotate | --secret-stdin", nargs: 1, what: "client name", api: true,
		summary: "Rotate or set a client's CHAP secret",
		help: `--rotate gives the client a new generated CHAP secret (and a new mutual
secret if it has one); --secret-stdin sets the secret from the first line of
standard input (at least 12 characters). Secrets are never shown, and a
booted machine keeps the old one until it boots again.
`,
		example: "dls client chap pc-01 --rotate",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&rotate, "rotate", false, "give the client a new generated CHAP secret")
			fs.BoolVar(&secretStdin, "secret-stdin", false, "set the CHAP secret from the first line of standard input")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if rotate == secretStdin {
				return usagef("chap: give one of --rotate, --secret-stdin")
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			return c.chap(ctx, conn, args[0], rotate)
		},
	}
}

func clientDelete() *command {
	return &command{
		name: "delete", args: "NAME", nargs: 1, what: "client name", api: true,
		summary: "Delete a client; its volume stays on its storage",
		example: "dls client delete pc-01",
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			if _, err := conn.call(ctx, "DELETE", clientPath(args[0]), nil); err != nil {
				return err
			}
			if !c.api.json() {
				fmt.Fprintf(c.stdout, "client %s deleted (its volume stays on its storage)\n", args[0])
			}
			return nil
		},
	}
}

func clientReset() *command {
	var (
		version uint64
		sel     selection
	)
	return &command{
		name: "reset", args: "NAME | --label KEY=VALUE... | --all", optArgs: 1, what: "client name", api: true,
		summary: "Make clients' volumes fresh clones of their image",
		help: `The clone is of the image's current version, or of version N with --version.
--label and --all reset many clients, one request each, after a confirmation
on a terminal (--yes skips it); a volume in use is refused for its client only.
`,
		example: "dls client reset --label room=a --yes",
		flags: func(fs *flag.FlagSet) {
			fs.Uint64Var(&version, "version", 0, "image version `N` to clone (default: the current one)")
			sel.register(fs)
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			names, err := sel.names(ctx, conn, args)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				if err := c.confirm("reset the volumes of", len(names), sel.yes); err != nil {
					return err
				}
			}
			if len(args) == 1 {
				return c.resetClient(ctx, conn, args[0], version)
			}
			return c.fleet(names, "reset", func(name string) error { return c.resetClient(ctx, conn, name, version) })
		},
	}
}

// resetClient resets one client's volume and prints what it became.
func (c *cli) resetClient(ctx context.Context, conn *apiConn, name string, version uint64) error {
	b, err := conn.call(ctx, "POST", clientPath(name)+"/volume", map[string]any{"action": "reset", "version": version})
	if err != nil || c.api.json() {
		return c.raw(b, err)
	}
	var v struct {
		Name    string `json:"name"`
		Image   string `json:"image"`
		Version uint64 `json:"version"`
		Size    int64  `json:"size"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("decode volume: %w", err)
	}
	fmt.Fprintf(c.stdout, "client %s: volume %s reset to image %s version %d (%s)\n", name, v.Name, v.Image, v.Version, size(v.Size))
	return nil
}

// clientWake is dls client wake; wakeCommand the same as dls wake.
func clientWake() *command {
	var sel selection
	return &command{
		name: "wake", args: "NAME | --label KEY=VALUE... | --all", optArgs: 1, what: "client name", api: true,
		summary: "Send clients a Wake-on-LAN magic packet",
		help: `--label and --all wake many clients, after a confirmation on a terminal
(--yes skips it).
`,
		example: "dls client wake --label room=a",
		flags:   sel.register,
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			names, err := sel.names(ctx, conn, args)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				return c.wakeClient(ctx, conn, args[0])
			}
			if err := c.confirm("wake", len(names), sel.yes); err != nil {
				return err
			}
			return c.fleet(names, "woke", func(name string) error { return c.wakeClient(ctx, conn, name) })
		},
	}
}

func wakeCommand() *command {
	w := clientWake()
	w.summary += " (dls client wake)"
	w.example = "dls wake pc-01"
	return w
}

// chap rotates the client's CHAP secret, or sets it from the first
// line of standard input. Nothing secret is printed.
func (c *cli) chap(ctx context.Context, conn *apiConn, name string, rotate bool) error {
	body := map[string]any{"rotate": true}
	if !rotate {
		secret, err := readLine(c.stdin)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read secret: %w", err)
		}
		if secret = strings.TrimRight(secret, "\r\n"); secret == "" {
			return usagef("--secret-stdin: standard input has no secret")
		}
		body = map[string]any{"secret": secret}
	}
	b, err := conn.call(ctx, "POST", clientPath(name)+"/chap", body)
	if err != nil {
		return err
	}
	if c.api.json() {
		c.printJSON(b)
		return nil
	}
	var res struct {
		Action       string `json:"action"`
		MutualSecret bool   `json:"mutual_secret"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	what := "CHAP secret"
	if res.MutualSecret && rotate {
		what = "CHAP secrets (one-way and mutual)"
	}
	fmt.Fprintf(c.stdout, "client %s: %s %s; it takes effect at the machine's next boot\n", name, what, res.Action)
	return nil
}

func (c *cli) wakeClient(ctx context.Context, conn *apiConn, name string) error {
	b, err := conn.call(ctx, "POST", clientPath(name)+"/wake", nil)
	if err != nil {
		return err
	}
	if c.api.json() {
		c.printJSON(b)
		return nil
	}
	var w struct {
		MAC    string `json:"mac"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintf(c.stdout, "client %s (%s): %s\n", name, w.MAC, w.Status)
	return nil
}

// showClient prints the client a call answered.
func (c *cli) showClient(b []byte, err error) error {
	if err != nil {
		return err
	}
	if c.api.json() {
		c.printJSON(b)
		return nil
	}
	var cl apiClient
	if err := json.Unmarshal(b, &cl); err != nil {
		return fmt.Errorf("decode client: %w", err)
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(cl.Labels)) {
		labels = append(labels, k+"="+cl.Labels[k])
	}
	return c.fields(
		"Name", cl.Name,
		"MAC", cl.MAC,
		"Image", cl.Image,
		"Address", cl.Address,
		"Persistent", yesNo(cl.Persistent),
		"Initiators", strings.Join(cl.Initiators, ", "),
		"Extra IPs", strings.Join(cl.Extra, ", "),
		"Labels", strings.Join(labels, ", "),
		"Volume", volumeOf(cl),
		"Created", when(cl.CreatedAt),
		"Updated", when(cl.UpdatedAt),
	)
}

// volumeOf is the name of the client's volume.
func volumeOf(cl apiClient) string {
	if cl.Volume != "" {
		return cl.Volume
	}
	return cl.Name
}

// parseLabels turns KEY=VALUE flags into a map; a lone ” means none.
func parseLabels(l listFlag) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range l {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--label %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// parseUint parses a positional number.
func parseUint(s, what string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usagef("%s %q: want a number from 1", what, s)
	}
	return n, nil
}
