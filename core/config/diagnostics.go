package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// FormatDiagnostics turns the error diagnostics in diags into one error
// with one "file:line:col: message" line each, ordered by position in the
// file and without repeats. The position is the start of the diagnostic's
// subject; the message is its summary, then "; " and its detail when it
// has one. Errors without a subject come last, as the message alone.
// Warnings are left out; it returns nil when no error remains.
func FormatDiagnostics(diags hcl.Diagnostics) error {
	var errs hcl.Diagnostics
	for _, d := range diags {
		if d != nil && d.Severity == hcl.DiagError {
			errs = append(errs, d)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	// Sort by position, then by text: hcldec reports some problems in map
	// order, and the same input must give the same output.
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].Subject, errs[j].Subject
		switch {
		case a == nil || b == nil:
			if a != nil || b != nil {
				return a != nil // positioned errors first
			}
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Line != b.Start.Line:
			return a.Start.Line < b.Start.Line
		case a.Start.Column != b.Start.Column:
			return a.Start.Column < b.Start.Column
		}
		return formatDiagnostic(errs[i]) < formatDiagnostic(errs[j])
	})
	lines := make([]string, 0, len(errs))
	for _, d := range errs {
		line := formatDiagnostic(d)
		if len(lines) == 0 || lines[len(lines)-1] != line {
			lines = append(lines, line)
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// FormatWarnings returns the warning diagnostics in diags, one
// "file:line:col: warning: message" line each, in the order found.
func FormatWarnings(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		if d == nil || d.Severity != hcl.DiagWarning {
			continue
		}
		w := *d
		w.Summary = "warning: " + w.Summary
		out = append(out, formatDiagnostic(&w))
	}
	return out
}

func formatDiagnostic(d *hcl.Diagnostic) string {
	msg := d.Summary
	if d.Detail != "" {
		msg += "; " + d.Detail
	}
	if d.Subject == nil {
		return msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, msg)
}

// errorAt returns an error diagnostic at rng.
func errorAt(rng hcl.Range, summary, detailFormat string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFormat, args...),
		Subject:  rng.Ptr(),
	}
}

// warningAt returns a warning diagnostic at rng.
func warningAt(rng hcl.Range, summary, detailFormat string, args ...any) *hcl.Diagnostic {
	d := errorAt(rng, summary, detailFormat, args...)
	d.Severity = hcl.DiagWarning
	return d
}

// position renders where rng starts, for messages that point elsewhere.
func position(rng hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", rng.Filename, rng.Start.Line, rng.Start.Column)
}
