package hostservices

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"text/template"

	"github.com/dls-project/dls/core/bootscript"
)

// maxCachedScripts bounds the script cache: past it the cache starts over
// (clients deleted or renamed leave entries behind).
const maxCachedScripts = 16384

// scriptCache keeps each client's rendered script, so that a script is
// rendered once per change of what it is made of, not at every request.
//
// An entry is keyed by the client and the platform asked for, and holds the
// whole ScriptData it was rendered from (the client, its image's boot
// profile, the boot settings, the architecture) and the template: it is
// used only while both are the same, so a change of any of them renders
// again, and the cache never needs to be told of changes.
//
// The boot's token differs at each boot: an entry is rendered with a
// placeholder in its place, and the token is put in when the script is
// served. The entry is rendered with two placeholders; only when putting
// the second one in the place of the first gives the second rendering
// exactly is the entry used that way (a template that reshapes the token
// or happens to hold the placeholder is rendered at every request, as
// before). Placeholders are random, per host, shaped as a token.
type scriptCache struct {
	placeholders [2]string

	mu      sync.Mutex
	entries map[scriptKey]scriptEntry
}

type scriptKey struct {
	client   string
	platform archOf
}

type scriptEntry struct {
	data bootscript.ScriptData // without Token
	tmpl *template.Template
	body string // rendered with placeholders[0] as the token
	// withToken: rendered for a boot with a token; perBoot: body holds
	// the token placeholder; rerender: the template cannot be served from
	// body, render at every request.
	withToken, perBoot, rerender bool
}

func newScriptCache() (*scriptCache, error) {
	c := &scriptCache{entries: map[scriptKey]scriptEntry{}}
	for i := range c.placeholders {
		b := make([]byte, 32) // as long as a boot token (sessions.newToken)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("script cache placeholder: %w", err)
		}
		c.placeholders[i] = base64.RawURLEncoding.EncodeToString(b)
	}
	return c, nil
}

// render returns the script for data (whose Token is the boot's token, or
// "" when its image does not confirm) from template tmpl (nil: built-in):
// bootscript.Render's output, from the cache when nothing it depends on
// changed since the last time.
func (c *scriptCache) render(client string, a archOf, data bootscript.ScriptData, tmpl *template.Template) (string, error) {
	if c == nil {
		return bootscript.Render(data, tmpl)
	}
	token := data.Token
	data.Token = ""
	key := scriptKey{client: client, platform: a}
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || e.data != data || e.tmpl != tmpl || e.withToken != (token != "") {
		var err error
		if e, err = c.fill(data, tmpl, token != ""); err != nil {
			return "", err
		}
		c.mu.Lock()
		if len(c.entries) >= maxCachedScripts {
			c.entries = map[scriptKey]scriptEntry{}
		}
		c.entries[key] = e
		c.mu.Unlock()
	}
	switch {
	case e.rerender:
		data.Token = token
		return bootscript.Render(data, tmpl)
	case !e.perBoot:
		return e.body, nil
	}
	// The token is checked as Render checks every value.
	if err := (bootscript.ScriptData{Client: data.Client, Token: token}).Check(); err != nil {
		return "", fmt.Errorf("render boot script for client %s: %w", data.Client, err)
	}
	return strings.ReplaceAll(e.body, c.placeholders[0], token), nil
}

// fill renders the entry of data and tmpl; withToken: the boot has a token.
func (c *scriptCache) fill(data bootscript.ScriptData, tmpl *template.Template, withToken bool) (scriptEntry, error) {
	e := scriptEntry{data: data, tmpl: tmpl, withToken: withToken}
	if !withToken {
		body, err := bootscript.Render(data, tmpl)
		e.body = body
		return e, err
	}
	data.Token = c.placeholders[0]
	first, err := bootscript.Render(data, tmpl)
	if err != nil {
		return e, err
	}
	data.Token = c.placeholders[1]
	second, err := bootscript.Render(data, tmpl)
	if err != nil {
		return e, err
	}
	e.body = first
	switch {
	case first == second && !strings.Contains(first, c.placeholders[0]):
		// The template does not use the token: one script for every boot.
	case !strings.Contains(first, c.placeholders[0]):
		// The token does not appear as such: the template reshapes it.
		e.rerender = true
	case strings.ReplaceAll(first, c.placeholders[0], c.placeholders[1]) != second:
		e.rerender = true
	default:
		e.perBoot = true
	}
	return e, nil
}
