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
	sdkconfig "github.com/dls-project/dls/sdk/config"
	"github.com/hashicorp/go-hclog"
)

// Roles the host knows; a user's role is carried as a group of that name.
var roles = []string{"admin", "operator", "viewer"}

const userUsage = `Usage:
  dls user add NAME --password-stdin --role admin|operator|viewer [--auth INSTANCE] --config F
  dls user passwd NAME --password-stdin [--auth INSTANCE] --config F
  dls user delete NAME [--auth INSTANCE] --config F
  dls user list [--auth INSTANCE] --config F

Runs the auth plugin itself: no host needs to be running. The plugin is the
config's first auth block that administers its own users (auth "local"),
or the one named by --auth. add, passwd and delete are written to the state
store's audit log; passwd and delete also revoke the user's refresh tokens
there, so their API sessions end (the store is opened directly, host up or
down).
`

// user runs `dls user ...`.
func user(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	verb, rest := args[0], args[1:]
	var name string
	if verb != "list" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprintf(stderr, "dls user %s: the user name comes first\n\n%s", verb, userUsage)
			return 2
		}
		name, rest = rest[0], rest[1:]
	}
	fs := flag.NewFlagSet("dls user "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "dls.hcl", "config file")
	role := fs.String("role", "", "role: admin, operator or viewer")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	authName := fs.String("auth", "", "auth plugin instance (default: the first that administers users)")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	if verb == "add" && !slices.Contains(roles, *role) {
		fmt.Fprintf(stderr, "dls user add: --role must be one of %s\n", strings.Join(roles, ", "))
		return 2
	}
	var password string
	if verb == "add" || verb == "passwd" {
		if !*pwStdin {
			fmt.Fprintf(stderr, "dls user %s: give the password on standard input with --password-stdin\n", verb)
			return 2
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintln(stderr, "dls user: read password:", err)
			return 1
		}
		password = strings.TrimRight(line, "\r\n")
	}
	logger := hclog.New(&hclog.LoggerOptions{Output: stderr, Level: hclog.Error})
	// Changes need the state store (revocation, audit): open it before
	// changing anything, so that a store that cannot be opened changes
	// nothing.
	var st userStore
	if verb != "list" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "dls user %s: %v\n", verb, err)
			return 1
		}
		if st, err = openStateStore(ctx, cfg); err != nil {
			fmt.Fprintf(stderr, "dls user %s: %v (nothing changed)\n", verb, err)
			return 1
		}
		defer st.Close()
	}
	var instance string
	err := withUserAdmin(ctx, *cfgPath, *authName, logger, func(ua *authrpc.Client, inst string) error {
		instance = inst
		return runUserVerb(ctx, ua, verb, name, password, *role, stdout)
	})
	if err != nil {
		fmt.Fprintf(stderr, "dls user %s: %v\n", verb, err)
		return 1
	}
	if verb == "list" {
		return 0
	}
	if err := recordUserChange(ctx, st, verb, name, *role, instance); err != nil {
		fmt.Fprintf(stderr, "dls user %s: user %s: %s done, but %v\n", verb, name, verb, err)
		return 1
	}
	fmt.Fprintf(stdout, "user %s: %s done\n", name, verb)
	return 0
}

// runUserVerb does verb with the auth plugin.
func runUserVerb(ctx context.Context, ua *authrpc.Client, verb, name, password, role string, stdout io.Writer) error {
	switch verb {
	case "add":
		return ua.CreateUser(ctx, name, password, []string{role})
	case "passwd":
		return ua.SetPassword(ctx, name, password)
	case "delete":
		return ua.DeleteUser(ctx, name)
	case "list":
		users, err := ua.ListUsers(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tGROUPS")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\n", u.Username, strings.Join(u.Groups, ","))
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown command %q", verb)
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
			return b.ConfigureError(sdkconfig.Diagnostics(diags))
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
