package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every error about the content of the configuration: bad YAML, unknown
// keys, wrong types and values that fail validation. I/O errors (an unreadable --config file) do not
// wrap it.
var ErrInvalid = errors.New("invalid configuration")

// Error describes one problem with the configuration.
//
// File and Line are set when the offending value came from a configuration file. For values that
// came from the environment or a command-line flag, File is empty and Msg names the source.
type Error struct {
	File string // configuration file, "" when the value did not come from a file
	Key  string // dotted key such as "connmgr.high_water", "" for file-level problems
	Line int    // 1-based line in File, 0 when unknown
	Msg  string

	cause error // underlying error (e.g. from the YAML parser), optional
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		b.WriteString(" ")
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		b.WriteString(": line ")
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": key %q", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap reports ErrInvalid and, if any, the underlying cause.
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrInvalid, e.cause}
	}
	return []error{ErrInvalid}
}

// problems collects configuration errors so that all of them are reported at once.
type problems []error

// add records a problem with key.
func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// addErr records err, which should come from a section validator. Errors that do not wrap
// ErrInvalid are wrapped into an *Error so that errors.Is(err, ErrInvalid) holds.
func (p *problems) addErr(err error) {
	if err == nil {
		return
	}
	for _, e := range flatten(err) {
		if !errors.Is(e, ErrInvalid) {
			e = &Error{Msg: e.Error(), cause: e}
		}
		*p = append(*p, e)
	}
}

// positive records a problem when v is not > 0.
func (p *problems) positive(key string, v int64) {
	if v <= 0 {
		p.add(key, "must be greater than 0, got %d", v)
	}
}

// err returns nil, the single problem, or all problems joined.
func (p problems) err() error {
	switch len(p) {
	case 0:
		return nil
	case 1:
		return p[0]
	default:
		return errors.Join(p...)
	}
}

// flatten returns the leaves of a tree of errors built with errors.Join.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*Error); ok {
		return []error{err}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
