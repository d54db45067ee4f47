package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

const loginHelp = `Keeps the tokens in $XDG_CONFIG_HOME/dls/credentials.json (else
~/.config/dls/credentials.json), mode 0600; the other commands refresh them
when they expire. The server is --server, else $DLS_SERVER, else
` + defaultServer + `; the user --user, else $DLS_USER, else asked. The
password is asked on the terminal (not echoed), or read from the first line
of standard input with --password-stdin. --tls-ca and --insecure are kept
for the later commands.
`

func loginCommand() *command {
	var (
		userName string
		pwStdin  bool
	)
	return &command{
		name: "login", args: "[--server URL] [--user NAME] [--password-stdin]", api: true,
		summary: "Log in to the host's admin API",
		help:    loginHelp,
		example: "echo 'a long passphrase' | dls login --user admin --password-stdin",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&userName, "user", "", "`NAME` user name (default $DLS_USER, else asked)")
			fs.BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of standard input")
		},
		run: func(ctx context.Context, c *cli, _ []string) error {
			return c.login(ctx, userName, pwStdin)
		},
	}
}

func logoutCommand() *command {
	return &command{
		name: "logout", api: true,
		summary: "Revoke the tokens on the server and remove the credentials file",
		example: "dls logout",
		run: func(ctx context.Context, c *cli, _ []string) error {
			return c.logout(ctx)
		},
	}
}

func (c *cli) login(ctx context.Context, userName string, pwStdin bool) error {
	f := &c.api
	if f.server == "" {
		// Log in where asked, not where the last login went.
		f.server = c.getenv("DLS_SERVER")
	}
	if f.server == "" {
		f.server = defaultServer
	}
	conn, err := c.connect(false)
	if err != nil {
		return err
	}
	name := userName
	if name == "" {
		name = c.getenv("DLS_USER")
	}
	tty, isTTY := terminal(c.stdin)
	if name == "" {
		if pwStdin || !isTTY {
			return usagef("give the user name with --user NAME (or $DLS_USER)")
		}
		fmt.Fprint(c.stderr, "User: ")
		if name, err = readLine(tty); err != nil {
			return fmt.Errorf("read user name: %w", err)
		}
		if name = strings.TrimSpace(name); name == "" {
			return usagef("empty user name")
		}
	}
	var password string
	switch {
	case pwStdin:
		if password, err = readLine(c.stdin); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read password: %w", err)
		}
	case isTTY:
		fmt.Fprintf(c.stderr, "Password for %s at %s: ", name, conn.server)
		password, err = readPassword(ctx, tty)
		fmt.Fprintln(c.stderr)
		if err != nil {
			return fmt.Errorf("read password: %w", err)
		}
	default:
		return usagef("%s", noTerminal)
	}
	if password == "" {
		return usagef("empty password")
	}
	if f.insecure {
		c.warn("warning: --insecure: the server's certificate is not checked, for this login and the commands after it")
	}
	if u, _ := url.Parse(conn.server); u.Scheme == "http" && !loopback(u.Hostname()) {
		c.warn(fmt.Sprintf("warning: %s is plain HTTP: the password and tokens cross the network in clear; use https", conn.server))
	}
	b, err := conn.send(ctx, "POST", "/auth/login", map[string]string{"username": name, "password": password}, "")
	if err != nil {
		return err
	}
	var pair tokenPair
	if err := json.Unmarshal(b, &pair); err != nil || pair.AccessToken == "" || pair.RefreshToken == "" {
		return fmt.Errorf("log in: unexpected answer %.100q", b)
	}
	creds := &credentials{Server: conn.server, User: name, TLSCA: absPath(conn.tlsCA), Insecure: conn.insecure}
	creds.set(pair, c.now())
	if err := saveCredentials(conn.credPath, creds); err != nil {
		return err
	}
	if f.json() {
		out, _ := json.MarshalIndent(map[string]string{"server": creds.Server, "user": name, "role": creds.Role, "credentials": conn.credPath}, "", "  ")
		c.printJSON(out)
		return nil
	}
	fmt.Fprintf(c.stdout, "logged in to %s as %s (%s)\n", creds.Server, name, creds.Role)
	return nil
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readLine reads one line, byte by byte (so that nothing after it is
// consumed), without its line end.
func readLine(r io.Reader) (string, error) {
	var line []byte
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if err != nil {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				break
			}
			return string(line), err
		}
	}
	return strings.TrimRight(string(line), "\r"), nil
}

func (c *cli) logout(ctx context.Context) error {
	conn, err := c.connect(true)
	if err != nil {
		return err
	}
	// The access token goes along (to be denied) while it is valid; the
	// refresh token is revoked either way.
	body := map[string]string{"refresh_token": conn.creds.RefreshToken}
	token := ""
	if c.now().Add(refreshSkew).Before(conn.creds.Expiry) {
		token = conn.creds.AccessToken
	}
	_, err = conn.send(ctx, "POST", "/auth/logout", body, token)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && token != "" {
		_, err = conn.send(ctx, "POST", "/auth/logout", body, "")
	}
	if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		err = nil // the tokens were no longer valid: nothing to revoke
	}
	if rmErr := os.Remove(conn.credPath); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		return fmt.Errorf("remove credentials: %w", rmErr)
	}
	if err != nil {
		return fmt.Errorf("credentials removed, but the server did not revoke the tokens: %w", err)
	}
	fmt.Fprintf(c.stdout, "logged out of %s\n", conn.server)
	return nil
}
