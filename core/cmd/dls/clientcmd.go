package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const clientUsage = `Usage:
  dls client list
  dls client get NAME
  dls client add NAME --mac MAC --image IMAGE [--address IPV4] [--initiator IQN]...
                 [--extra-address IP]... [--persistent=false] [--label KEY=VALUE]...
  dls client set NAME [--mac MAC] [--image IMAGE] [--address IPV4|''] [--initiator IQN|'']...
                 [--extra-address IP|'']... [--persistent=true|false] [--label KEY=VALUE]...
  dls client chap NAME --rotate | --secret-stdin
  dls client delete NAME
  dls client reset NAME [--version N]
  dls client wake NAME

set changes only the flags given (--initiator, --extra-address and --label
replace the whole list; '' clears it) and keeps the client's CHAP secret.
chap --rotate gives the client a new generated CHAP secret (and a new mutual
secret if it has one); --secret-stdin sets the secret from the first line of
standard input (at least 12 characters). Secrets are never shown: add
generates one, and a booted machine keeps the old one until it boots again.
reset makes the client's volume a fresh clone of its image's current version
(or version N); delete keeps the volume on its storage. Common flags:
--server URL, --tls-ca FILE, --insecure, -o table|json.
`

const wakeUsage = `Usage:
  dls wake NAME    (the same as dls client wake NAME)

Sends the client a Wake-on-LAN magic packet.
`

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
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
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

func (c *cli) client(ctx context.Context, args []string) error {
	verb, args, err := c.verb(args)
	if err != nil {
		return err
	}
	fs, f := c.flags(clientUsage)
	var (
		mac, image, address       *string
		initiators, labels, extra listFlag
		persistent                *bool
		version                   *uint64
		rotate, secretStdin       *bool
	)
	switch verb {
	case "add", "set":
		mac = fs.String("mac", "", "MAC address of the boot NIC")
		image = fs.String("image", "", "image the client boots")
		address = fs.String("address", "", "IPv4 address reserved for the client")
		fs.Var(&initiators, "initiator", "extra iSCSI initiator IQN allowed to log in as the client (repeat for more)")
		persistent = fs.Bool("persistent", true, "keep the client's volume across boots")
		fs.Var(&labels, "label", "KEY=VALUE tag (repeat for more)")
		fs.Var(&extra, "extra-address", "address the client's extra initiators may log in from (repeat for more)")
	case "chap":
		rotate = fs.Bool("rotate", false, "give the client a new generated CHAP secret")
		secretStdin = fs.Bool("secret-stdin", false, "set the CHAP secret from the first line of standard input")
	case "reset":
		version = fs.Uint64("version", 0, "image version to clone (default: the current one)")
	case "list", "get", "delete", "wake":
	default:
		return usagef("unknown command %q", verb)
	}
	want, what := 1, "client name"
	if verb == "list" {
		want = 0
	}
	pos, err := c.parse(fs, f, args, want, want, what)
	if err != nil {
		return err
	}
	set := given(fs)
	var newLabels map[string]string
	switch verb {
	case "add":
		if *mac == "" || *image == "" {
			return usagef("add needs --mac and --image")
		}
	case "set":
		if !slices.ContainsFunc([]string{"mac", "image", "address", "initiator", "extra-address", "persistent", "label"}, func(n string) bool { return set[n] }) {
			return usagef("set: give at least one of --mac, --image, --address, --initiator, --extra-address, --persistent, --label")
		}
	case "chap":
		if *rotate == *secretStdin {
			return usagef("chap: give one of --rotate, --secret-stdin")
		}
	}
	if set["label"] {
		if newLabels, err = parseLabels(labels); err != nil {
			return err
		}
	}
	conn, err := c.connect(f, true)
	if err != nil {
		return err
	}
	var name, path string
	if want == 1 {
		name = pos[0]
		path = "/clients/" + url.PathEscape(name)
	}
	switch verb {
	case "list":
		b, err := conn.call(ctx, "GET", "/clients", nil)
		if err != nil {
			return err
		}
		if f.json() {
			c.printJSON(b)
			return nil
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
	case "get":
		b, err := conn.call(ctx, "GET", path, nil)
		return c.showClient(f, b, err)
	case "add":
		in := clientInput{Name: name, MAC: *mac, Image: *image, Address: *address, Initiators: initiators, Extra: extra, Persistent: *persistent, Labels: newLabels}
		b, err := conn.call(ctx, "POST", "/clients", in)
		return c.showClient(f, b, err)
	case "set":
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
			in.MAC = *mac
		}
		if set["image"] {
			in.Image = *image
		}
		if set["address"] {
			in.Address = *address
		}
		if set["persistent"] {
			in.Persistent = *persistent
		}
		if set["initiator"] {
			in.Initiators = slices.DeleteFunc(slices.Clone(initiators), func(s string) bool { return s == "" })
		}
		if set["extra-address"] {
			in.Extra = slices.DeleteFunc(slices.Clone(extra), func(s string) bool { return s == "" })
		}
		if set["label"] {
			in.Labels = newLabels
		}
		b, err = conn.call(ctx, "PUT", path, in)
		return c.showClient(f, b, err)
	case "chap":
		return c.clientCHAP(ctx, conn, f, name, path, *rotate)
	case "delete":
		if _, err := conn.call(ctx, "DELETE", path, nil); err != nil {
			return err
		}
		if !f.json() {
			fmt.Fprintf(c.stdout, "client %s deleted (its volume stays on its storage)\n", name)
		}
		return nil
	case "reset":
		b, err := conn.call(ctx, "POST", path+"/volume", map[string]any{"action": "reset", "version": *version})
		if err != nil {
			return err
		}
		if f.json() {
			c.printJSON(b)
			return nil
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
	case "wake":
		return c.wakeClient(ctx, conn, f, name)
	}
	return nil
}

// clientCHAP rotates the client's CHAP secret, or sets it from the first
// line of standard input. Nothing secret is printed.
func (c *cli) clientCHAP(ctx context.Context, conn *apiConn, f *commonFlags, name, path string, rotate bool) error {
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
	b, err := conn.call(ctx, "POST", path+"/chap", body)
	if err != nil {
		return err
	}
	if f.json() {
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

// wake: dls wake NAME.
func (c *cli) wake(ctx context.Context, args []string) error {
	fs, f := c.flags(wakeUsage)
	pos, err := c.parse(fs, f, args, 1, 1, "client name")
	if err != nil {
		return err
	}
	conn, err := c.connect(f, true)
	if err != nil {
		return err
	}
	return c.wakeClient(ctx, conn, f, pos[0])
}

func (c *cli) wakeClient(ctx context.Context, conn *apiConn, f *commonFlags, name string) error {
	b, err := conn.call(ctx, "POST", "/clients/"+url.PathEscape(name)+"/wake", nil)
	if err != nil {
		return err
	}
	if f.json() {
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
func (c *cli) showClient(f *commonFlags, b []byte, err error) error {
	if err != nil {
		return err
	}
	if f.json() {
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
		"Created", when(cl.CreatedAt),
		"Updated", when(cl.UpdatedAt),
	)
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
