package config

import (
	"strings"
	"testing"
)

func TestHostServices(t *testing.T) {
	path := writeConfig(t, `
protocol "dhcp" "lan" {}
protocol "iscsi" "target" {}
protocol "vendor" "v" {}
protocol "vendor" "w" {
  host_services = ["lookup", "events", "volumes"]
}
protocol "dhcp" "narrow" {
  host_services = []
}
storage "dir" "d" {}
`)
	cfg := mustLoad(t, path)
	for name, want := range map[string]string{
		"lan":    `["lookup", "leases", "events"]`,
		"target": `["lookup", "secrets", "volumes", "events"]`,
		"v":      `["events"]`,
		"w":      `["lookup", "volumes", "events"]`,
		"narrow": `[]`,
		"d":      `[]`,
	} {
		if got := cfg.Plugin(name).Grant().String(); got != want {
			t.Errorf("%s: grant %s, want %s", name, got, want)
		}
	}
}

func TestHostServicesErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown name", "protocol \"x\" \"p\" {\n  host_services = [\"events\", \"volume\"]\n}\n",
			`2:30: Invalid value for "host_services"; Element 1: "volume" is not a host service; use one of "lookup", "secrets", "scripts", "volumes", "leases", "events".`},
		{"secrets alone", "protocol \"x\" \"p\" {\n  host_services = [\"secrets\"]\n}\n",
			`2:19: Invalid value for "host_services"; "secrets" adds CHAP secrets to "lookup"'s decisions: grant "lookup" too.`},
		{"storage block", "storage \"dir\" \"d\" {\n  host_services = [\"events\"]\n}\n",
			`2:19: Invalid value for "host_services"; host_services is for protocol blocks: storage plugins call no host service.`},
		{"unknown user", "plugin {\n  user = \"no-such-user-dls\"\n}\n",
			`2:10: Invalid value for "user"; no user "no-such-user-dls" on this machine.`},
		{"root user", "plugin {\n  user = \"root\"\n}\n",
			`2:10: Invalid value for "user"; "root" is root: plugins under it could read everything the host holds; name an unprivileged user.`},
		{"unknown group", "plugin {\n  user = \"nobody\"\n  group = \"no-such-group-dls\"\n}\n",
			`3:11: Invalid value for "group"; no group "no-such-group-dls" on this machine.`},
		{"two plugin blocks", "plugin {\n  user = \"nobody\"\n}\nplugin {\n  user = \"nobody\"\n}\n",
			`4:1: Duplicate plugin block; Only one plugin block is allowed; the first is at `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, err := load(path, noEnv)
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			if got := strings.TrimPrefix(err.Error(), path+":"); !strings.HasPrefix(got, tc.want) {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestPluginUser(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, "plugin {\n  user = \"nobody\"\n}\n"))
	uid, gid, err := lookupUser("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	if u := cfg.PluginUser; !u.Set() || u.UID != uid || u.GID != gid || u.UserRange.Start.Line != 2 {
		t.Errorf("plugin user %+v, want nobody (%d:%d) at line 2", u, uid, gid)
	}
	if cfg := mustLoad(t, writeConfig(t, "")); cfg.PluginUser.Set() {
		t.Errorf("no plugin block: %+v", cfg.PluginUser)
	}
}
