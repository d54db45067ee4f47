package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	osuser "os/user"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/internal/pluginrpc/authrpc"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/hashicorp/go-hclog"
)

// Roles the host knows; a user's role is carried as a group of that name.
var roles = []string{"admin", "operator", "viewer"}

const userHelp = `Runs the auth plugin itself: no host needs to be running. The plugin is the
config's first auth block that administers its own users (auth "local"),
or the one named by --auth. add, passwd and delete are written to the state
store's audit log; passwd and delete also revoke the user's refresh tokens
there, so their API sessions end (the store is opened directly, host up or
down).
`

func userCommand() *command {
	return &command{
		name:    "user",
		summary: "Manage the users of the auth plugin (no host needed)",
		help:    userHelp,
		sub:     []*command{userAdd(), userPasswd(), userDelete(), userList()},
	}
}

// userFlags are the flags every user command takes.
type userFlags struct {
	config string
	auth   string
}

func (u *userFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&u.config, "config", "", configUsage)
	fs.StringVar(&u.auth, "auth", "", "`INSTANCE` auth plugin instance (default: the first that administers users)")
}

func registerPasswordStdin(fs *flag.FlagSet, p *bool) {
	fs.BoolVar(p, "password-stdin", false, "read the password from the first line of standard input")
}

func userAdd() *command {
	var (
		u       userFlags
		role    string
		pwStdin bool
	)
	return &command{
		name: "add", args: "NAME --password-stdin --role admin|operator|viewer", nargs: 1, what: "user name",
		summary: "Add a user with a role",
		example: "echo 'a long passphrase' | dls user add alice --password-stdin --role admin --config dls.hcl",
		flags: func(fs *flag.FlagSet) {
			u.register(fs)
			fs.StringVar(&role, "role", "", "`ROLE` role: admin, operator or viewer")
			registerPasswordStdin(fs, &pwStdin)
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if !slices.Contains(roles, role) {
				return usagef("--role must be one of %s", strings.Join(roles, ", "))
			}
			password, err := c.password(pwStdin)
			if err != nil {
				return err
			}
			return c.changeUser(ctx, u, "add", args[0], role, func(ua *authrpc.Client) error {
				return ua.CreateUser(ctx, args[0], password, []string{role})
			})
		},
	}
}

func userPasswd() *command {
	var (
		u       userFlags
		pwStdin bool
	)
	return &command{
		name: "passwd", args: "NAME --password-stdin", nargs: 1, what: "user name",
		summary: "Set a user's password; their API sessions end",
		example: "echo 'a new passphrase' | dls user passwd alice --password-stdin --config dls.hcl",
		flags: func(fs *flag.FlagSet) {
			u.register(fs)
			registerPasswordStdin(fs, &pwStdin)
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			password, err := c.password(pwStdin)
			if err != nil {
				return err
			}
			return c.changeUser(ctx, u, "passwd", args[0], "", func(ua *authrpc.Client) error {
				return ua.SetPassword(ctx, args[0], password)
			})
		},
	}
}

func userDelete() *command {
	var u userFlags
	return &command{
		name: "delete", args: "NAME", nargs: 1, what: "user name",
		summary: "Delete a user; their API sessions end",
		example: "dls user delete alice --config dls.hcl",
		flags:   u.register,
		run: func(ctx context.Context, c *cli, args []string) error {
			return c.changeUser(ctx, u, "delete", args[0], "", func(ua *authrpc.Client) error {
				return ua.DeleteUser(ctx, args[0])
			})
		},
	}
}

func userList() *command {
	var u userFlags
	return &command{
		name:    "list",
		summary: "List users and their groups",
		example: "dls user list --config dls.hcl",
		flags:   u.register,
		run: func(ctx context.Context, c *cli, _ []string) error {
			return withUserAdmin(ctx, configFile(u.config, c.getenv, fileExists), u.auth, c.pluginLogger(), func(ua *authrpc.Client, _ string) error {
				users, err := ua.ListUsers(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USER\tGROUPS")
				for _, u := range users {
					fmt.Fprintf(tw, "%s\t%s\n", u.Username, strings.Join(u.Groups, ","))
				}
				return tw.Flush()
			})
		},
	}
}

// password reads the password from the first line of standard input, the
// one way it is given.
func (c *cli) password(fromStdin bool) (string, error) {
	if !fromStdin {
		return "", usagef("give the password on standard input with --password-stdin")
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// pluginLogger shows the auth plugin's errors only.
func (c *cli) pluginLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: c.stderr, Level: hclog.Error})
}

// changeUser does change with the auth plugin, then revokes and audits it
// in the state store, and says it is done.
func (c *cli) changeUser(ctx context.Context, u userFlags, verb, name, role string, change func(ua *authrpc.Client) error) error {
	// Changes need the state store (revocation, audit): open it before
	// changing anything, so that a store that cannot be opened changes
	// nothing.
	u.config = configFile(u.config, c.getenv, fileExists)
	cfg, err := config.Load(u.config)
	if err != nil {
		return err
	}
	st, err := openStateStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w (nothing changed)", err)
	}
	defer st.Close()
	var instance string
	err = withUserAdmin(ctx, u.config, u.auth, c.pluginLogger(), func(ua *authrpc.Client, inst string) error {
		instance = inst
		return change(ua)
	})
	if err != nil {
		return err
	}
	if err := recordUserChange(ctx, st, verb, name, role, instance); err != nil {
		return fmt.Errorf("user %s: %s done, but %w", name, verb, err)
	}
	// Run as root on a packaged host: what the plugin and the store just
	// wrote belongs to the service user, who must read it.
	if o, ok := serviceOwner(os.Geteuid(), osuser.Lookup); ok {
		for _, err := range handOver(o, serviceFiles(cfg), []string{filepath.Join(cfg.DataDir, "plugins", instance)}, os.Lchown) {
			c.warn(fmt.Sprintf("warning: %v (the service user %s may not read it: chown -R %s %s)", err, serviceUser, serviceUser, cfg.DataDir))
		}
	}
	fmt.Fprintf(c.stdout, "user %s: %s done\n", name, verb)
	return nil
}

// serviceFiles are the files and folders outside the auth plugin's data
// dir that a user change may create: the data dir, its plugins folder and
// an SQLite database (with its journal files).
func serviceFiles(cfg *config.Config) []string {
	paths := []string{cfg.DataDir, filepath.Join(cfg.DataDir, "plugins")}
	if cfg.Database.Type == config.DatabaseSQLite {
		db := cfg.Database.Path
		paths = append(paths, db, db+"-wal", db+"-shm", db+"-journal")
	}
	return paths
}

// recordUserChange revokes the refresh tokens of a user whose password
// changed or who was deleted (a stolen session must not outlive either),
// and writes the change to the audit log, the actor being whoever runs the
// CLI.
func recordUserChange(ctx context.Context, st userStore, verb, name, role, instance string) error {
	detail := map[string]string{"auth": instance}
	if verb == "add" {
		detail["role"] = role
	}
	var revokeErr error
	if verb == "passwd" || verb == "delete" {
		if revokeErr = st.RevokeUserTokens(ctx, name); revokeErr == nil {
			detail["effect"] = "refresh tokens revoked"
		} else {
			detail["effect"] = "revoking refresh tokens failed"
		}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit entry: %w", err)
	}
	auditErr := st.AppendAudit(ctx, store.AuditEntry{Actor: osUser(), Action: "user." + verb, Object: "user/" + name, Detail: string(b), Source: "cli"})
	switch {
	case revokeErr != nil:
		return fmt.Errorf("revoking the user's sessions failed (log them out with dls user passwd again): %w", revokeErr)
	case auditErr != nil:
		return fmt.Errorf("writing the audit entry failed: %w", auditErr)
	}
	return nil
}

// withUserAdmin launches the auth plugin, configures it exactly as the
// host would (same config block, same data dir) and calls fn.
func withUserAdmin(ctx context.Context, cfgPath, instance string, logger hclog.Logger, fn func(ua *authrpc.Client, instance string) error) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	launcher := supervisor.NewLauncher()
	var tried []string
	for _, b := range cfg.Plugins {
		if b.Kind != base.KindAuth || (instance != "" && b.Name != instance) {
			continue
		}
		spec := supervisor.Spec{Name: b.Name, Kind: b.Kind, Type: b.Type, Path: b.BinaryPath(cfg.PluginDir), SHA256: b.SHA256}
		p, err := supervisor.Launch(ctx, spec, launcher, logger)
		if err != nil {
			return err
		}
		defer p.Kill()
		if !slices.Contains(p.Info.Capabilities, auth.CapabilityUserAdmin) {
			tried = append(tried, b.Name)
			continue
		}
		schema, err := p.Base().ConfigSchema(ctx)
		if err != nil {
			return err
		}
		js, err := b.DecodeConfig(schema)
		if err != nil {
			return err
		}
		dataDir := filepath.Join(cfg.DataDir, "plugins", b.Name)
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", dataDir, err)
		}
		diags, err := p.Base().Configure(ctx, baserpc.ConfigureArgs{ConfigJSON: js, Instance: b.Name, DataDir: dataDir})
		if err != nil {
			return err
		}
		if len(diags) > 0 {
			return b.ConfigureError(diags)
		}
		ac, ok := p.Client.(*authrpc.Client)
		if !ok {
			return fmt.Errorf("plugin %s is not an auth plugin", b.Name)
		}
		return fn(ac, b.Name)
	}
	switch {
	case len(tried) > 0:
		return fmt.Errorf("auth plugins %s do not administer their users (use your directory's tools)", strings.Join(tried, ", "))
	case instance != "":
		return fmt.Errorf("no auth plugin %q in %s", instance, cfgPath)
	}
	return fmt.Errorf("%s has no auth block (add: auth \"local\" \"admins\" {})", cfgPath)
}
