package config

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a problem with one configuration value. The host reports it at
// the position of that value in dls.hcl.
//
// Path names the value the way it is written in the plugin's config block:
// attribute and block names joined with dots, a zero-based index for a
// block that repeats or a list element, a quoted key for a map element:
//
//	"interface"
//	"pool[1].start"
//	"dns[0]"
//	"labels[\"rack\"]"
//
// An empty Path means the config block as a whole.
type Error struct {
	Path    string
	Message string
}

// Errorf returns an *Error for the value at path, with a message formatted
// as fmt.Sprintf does. Plugins use it for their own checks:
//
//	if end.Less(start) {
//		return config.Errorf(fmt.Sprintf("pool[%d].end", i), "end %s is before start %s", end, start)
//	}
func Errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Message: fmt.Sprintf(format, args...)}
}

// Error returns "path: message", or only the message when Path is empty.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// Errors collects several configuration errors so that an admin sees all of
// them at once. Build it with Add and return it with Err:
//
//	var errs config.Errors
//	errs.Add(checkPool(0, c.Pools[0]))
//	errs.Add(config.Errorf("mode", "unknown mode %q", c.Mode))
//	return errs.Err()
type Errors []*Error

// Add appends err to the list. An *Error or Errors is added as it is (also
// when wrapped or joined), any other error is added with an empty Path, and
// nil is ignored, so Add(check()) needs no if around it.
func (es *Errors) Add(err error) {
	*es = flatten(*es, err)
}

// Err returns the list as an error, or nil when it is empty. Return
// errs.Err() rather than errs: a nil Errors stored in an error interface
// is not a nil error.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Error joins the errors with "; ".
func (es Errors) Error() string {
	parts := make([]string, 0, len(es))
	for _, e := range es {
		if e != nil {
			parts = append(parts, e.Error())
		}
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the errors one by one, so errors.As(err, &e) with
// e *Error finds the first of them.
func (es Errors) Unwrap() []error {
	out := make([]error, 0, len(es))
	for _, e := range es {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// flatten appends the *Error values err holds to out.
func flatten(out Errors, err error) Errors {
	switch e := err.(type) {
	case nil:
		return out
	case *Error:
		if e == nil {
			return out
		}
		return append(out, e)
	case Errors:
		for _, x := range e {
			if x != nil {
				out = append(out, x)
			}
		}
		return out
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			out = flatten(out, x)
		}
		return out
	}
	var es Errors
	if errors.As(err, &es) {
		return flatten(out, es)
	}
	var one *Error
	if errors.As(err, &one) && one != nil {
		return append(out, one)
	}
	return append(out, &Error{Message: err.Error()})
}
