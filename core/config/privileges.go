package config

import (
	"fmt"
	"os/user"
	"strconv"

	"github.com/dls-project/dls/core/grants"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// PluginUser is the top-level plugin {} block: the user and group the
// host runs every plugin as (it must run as root to switch). The zero
// value (no block) runs plugins as the host's own user.
type PluginUser struct {
	// User and Group are as written; Group is empty for the user's
	// primary group.
	User, Group string
	// UID and GID are resolved when the config is loaded.
	UID, GID uint32
	// UserRange is the user attribute's value, for errors found later
	// (the host is not root).
	UserRange hcl.Range
}

// Set reports whether plugins run as another user.
func (u PluginUser) Set() bool { return u.User != "" }

// Same reports whether u and o run plugins as the same user and group.
func (u PluginUser) Same(o PluginUser) bool {
	return u.Set() == o.Set() && u.UID == o.UID && u.GID == o.GID
}

// Grant is the host services the block's instance may call: its
// host_services when set, else the default of its kind and type.
func (p *PluginBlock) Grant() grants.Set {
	if p.HostServices == nil {
		return grants.Default(p.Kind, p.Type)
	}
	g, err := grants.Parse(p.HostServices)
	if err != nil {
		return grants.Set{} // not reached: Load checked the names
	}
	return g
}

// hostServices decodes a plugin block's host_services: protocol blocks
// only, every element a grant name (reported at the element), and a
// grant grants.Parse accepts as a whole.
func (l *loader) hostServices(attrs hcl.Attributes, p *PluginBlock) {
	var names []string
	a := l.strings(attrs, "host_services", &names)
	if a == nil {
		return
	}
	if p.Kind != KindProtocol {
		l.invalid(a, "host_services is for protocol blocks: %s plugins call no host service.", p.Kind)
		return
	}
	ok := true
	for i, n := range names {
		if err := grants.Check(n); err != nil {
			rng := a.Expr.Range()
			if e, isSyntax := a.Expr.(hclsyntax.Expression); isSyntax {
				if el := elementExpr(e, pathSub{index: i}, l.ctx); el != nil {
					rng = el.Range()
				}
			}
			l.diags = append(l.diags, errorAt(rng, `Invalid value for "host_services"`, "Element %d: %v.", i, err))
			ok = false
		}
	}
	if !ok {
		return
	}
	if _, err := grants.Parse(names); err != nil {
		l.invalid(a, "%v.", err)
		return
	}
	p.HostServices = names
}

// pluginUser decodes the top-level plugin {} block. The user (and group)
// must exist on this machine.
func (l *loader) pluginUser(b *hcl.Block, u *PluginUser) {
	c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "user", Required: true}, {Name: "group"},
	}})
	ua := l.str(c.Attributes, "user", &u.User)
	if ua == nil {
		return
	}
	u.UserRange = ua.Expr.Range()
	uid, gid, err := lookupUser(u.User)
	if err != nil {
		l.invalid(ua, "%v.", err)
		u.User = ""
		return
	}
	if uid == 0 {
		l.invalid(ua, "%q is root: plugins under it could read everything the host holds; name an unprivileged user.", u.User)
		u.User = ""
		return
	}
	u.UID, u.GID = uid, gid
	if ga := l.str(c.Attributes, "group", &u.Group); ga != nil {
		gid, err := lookupGroup(u.Group)
		if err != nil {
			l.invalid(ga, "%v.", err)
			u.User = ""
			return
		}
		u.GID = gid
	}
}

// lookupUser resolves a user name or numeric uid to its uid and primary
// gid.
func lookupUser(name string) (uid, gid uint32, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, numeric := strconv.ParseUint(name, 10, 32); numeric == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("no user %q on this machine", name)
	}
	id, err1 := strconv.ParseUint(u.Uid, 10, 32)
	g, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("user %q: uid %q or gid %q is not a number", name, u.Uid, u.Gid)
	}
	return uint32(id), uint32(g), nil
}

// lookupGroup resolves a group name or numeric gid.
func lookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, numeric := strconv.ParseUint(name, 10, 32); numeric == nil {
			g, err = user.LookupGroupId(name)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("no group %q on this machine", name)
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q: gid %q is not a number", name, g.Gid)
	}
	return uint32(id), nil
}
