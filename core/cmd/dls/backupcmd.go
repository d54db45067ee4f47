package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
)

const backupHelp = `Writes every client, image and DHCP lease, the newest boot sessions and
the newest N audit entries (default 100000, 0 for none) to FILE ("-":
standard output), as one JSON document that dls restore takes back. Image
versions and client volumes live in the storage plugins and are not part
of it.

THE FILE HOLDS SECRETS: the clients' CHAP secrets, in clear. It is written
mode 0600, atomically (a temporary file renamed over FILE); keep it as you
keep the database. Needs the admin role.
`

const restoreHelp = `Restores a backup made by dls backup (FILE "-": standard input) into the
host's state store: images and clients are created or replaced, leases
committed where the store knows nothing newer (never over another
machine's live lease), finished boot sessions and audit entries missing
here added. Conflicts (a client's MAC taken by another client here, a
lease address another MAC holds) are listed, and make the command exit 1;
restoring the same file again changes nothing more. Needs the admin role.
`

// backupHead is the part of a backup document the CLI reads.
type backupHead struct {
	Format   string            `json:"format"`
	Version  int               `json:"version"`
	Clients  []json.RawMessage `json:"clients"`
	Images   []json.RawMessage `json:"images"`
	Leases   []json.RawMessage `json:"leases"`
	Sessions []json.RawMessage `json:"sessions"`
	Audit    []json.RawMessage `json:"audit"`
}

func backupCommand() *command {
	var audit int
	return &command{
		name: "backup", args: "FILE", nargs: 1, what: "file name", api: true,
		summary: "Write a backup of the host's state store to a file",
		help:    backupHelp,
		example: "dls backup /var/backups/dls.json",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&audit, "audit", -1, "keep the newest `N` audit entries (default: the server's, 100000; 0: none)")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			return c.backup(ctx, args[0], audit)
		},
	}
}

func (c *cli) backup(ctx context.Context, file string, audit int) error {
	conn, err := c.connect(true)
	if err != nil {
		return err
	}
	path := "/backup"
	if audit >= 0 {
		path += "?audit=" + strconv.Itoa(audit)
	}
	b, err := conn.call(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	var head backupHead
	if err := json.Unmarshal(b, &head); err != nil || head.Format != "dls-backup" {
		return fmt.Errorf("the server answered something other than a backup document (%.60q)", b)
	}
	if file == "-" {
		_, err := c.stdout.Write(b)
		return err
	}
	if err := writeFileAtomic(file, b, 0o600); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	counts := map[string]any{"file": file, "bytes": len(b), "clients": len(head.Clients), "images": len(head.Images),
		"leases": len(head.Leases), "sessions": len(head.Sessions), "audit": len(head.Audit)}
	if c.api.json() {
		out, _ := json.MarshalIndent(counts, "", "  ")
		c.printJSON(out)
		return nil
	}
	fmt.Fprintf(c.stdout, "backup of %s written to %s (%s, mode 0600; it holds CHAP secrets): clients %d, images %d, leases %d, sessions %d, audit entries %d\n",
		conn.server, file, size(int64(len(b))), len(head.Clients), len(head.Images), len(head.Leases), len(head.Sessions), len(head.Audit))
	return nil
}

// restoreSummary is what POST restore answers.
type restoreSummary struct {
	Clients   restoreCount `json:"clients"`
	Images    restoreCount `json:"images"`
	Leases    restoreCount `json:"leases"`
	Sessions  restoreCount `json:"sessions"`
	Audit     restoreCount `json:"audit"`
	Conflicts []struct {
		Kind   string `json:"kind"`
		Object string `json:"object"`
		Error  string `json:"error"`
	} `json:"conflicts"`
	Warnings []string `json:"warnings"`
}

type restoreCount struct {
	InBackup  int `json:"in_backup"`
	Restored  int `json:"restored"`
	Unchanged int `json:"unchanged"`
	Skipped   int `json:"skipped"`
}

func restoreCommand() *command {
	return &command{
		name: "restore", args: "FILE", nargs: 1, what: "file name", api: true,
		summary: "Restore a backup into the host's state store",
		help:    restoreHelp,
		example: "dls restore /var/backups/dls.json",
		run: func(ctx context.Context, c *cli, args []string) error {
			return c.restore(ctx, args[0])
		},
	}
}

func (c *cli) restore(ctx context.Context, file string) error {
	var doc []byte
	var err error
	if file == "-" {
		doc, err = io.ReadAll(c.stdin)
	} else {
		doc, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	conn, err := c.connect(true)
	if err != nil {
		return err
	}
	b, err := conn.call(ctx, "POST", "/restore", doc)
	if err != nil {
		return err
	}
	var sum restoreSummary
	if err := json.Unmarshal(b, &sum); err != nil {
		return fmt.Errorf("decode restore summary: %w", err)
	}
	if c.api.json() {
		c.printJSON(b)
	} else {
		var rows [][]string
		for _, k := range []struct {
			name string
			n    restoreCount
		}{{"clients", sum.Clients}, {"images", sum.Images}, {"leases", sum.Leases}, {"sessions", sum.Sessions}, {"audit", sum.Audit}} {
			rows = append(rows, []string{k.name, strconv.Itoa(k.n.InBackup), strconv.Itoa(k.n.Restored), strconv.Itoa(k.n.Unchanged), strconv.Itoa(k.n.Skipped)})
		}
		if err := c.table("KIND\tIN BACKUP\tRESTORED\tUNCHANGED\tSKIPPED", rows); err != nil {
			return err
		}
		for _, w := range sum.Warnings {
			fmt.Fprintf(c.stdout, "warning: %s\n", w)
		}
		for _, cf := range sum.Conflicts {
			fmt.Fprintf(c.stdout, "conflict: %s %s: %s\n", cf.Kind, cf.Object, cf.Error)
		}
	}
	if len(sum.Conflicts) > 0 {
		return fmt.Errorf("restored into %s with %d conflicts: those objects were not restored", conn.server, len(sum.Conflicts))
	}
	return nil
}
