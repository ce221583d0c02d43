// Package config maps command-line flags one to one onto RETRIGGER_*
// environment variables, and formats validation errors that name both, so
// an operator knows exactly what to fix.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// EnvName is the environment variable of a flag: "nats-url" ->
// "RETRIGGER_NATS_URL".
func EnvName(flagName string) string {
	return "RETRIGGER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then sets every flag not given on the command
// line from its environment variable, if set. A flag beats its variable.
// A float flag must hold a finite number: NaN and ±Inf are errors that
// name the flag and its variable. getenv is os.Getenv outside tests.
// flag.ErrHelp is returned as is.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	return ParseCommand(fs, "", args, getenv)
}

// ParseCommand is Parse for a command whose -help starts with summary: one
// line saying what the command is for and which other components it needs.
func ParseCommand(fs *flag.FlagSet, summary string, args []string, getenv func(string) string) error {
	// The flag package prints the whole help after any error; only -help
	// asks for it. A bad flag gets its error and a hint, which the caller
	// prints.
	out := fs.Output()
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		usage(out, fs, summary)
		return err
	}
	if err != nil {
		return fmt.Errorf("%w (%s -help lists every flag)", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: every setting is a flag (%s -help lists them)", fs.Arg(0), fs.Name())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := EnvName(f.Name)
		v, ok := lookup(getenv, env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for %s: %w", v, env, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return finiteFloats(fs)
}

// finiteFloats rejects NaN and ±Inf in every float flag: strconv accepts
// them, and no setting means anything with them (a NaN failure rate or
// retry multiplier compares false with every bound).
func finiteFloats(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || err != nil {
			return
		}
		if v, ok := g.Get().(float64); ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
			err = Invalid(f.Name, "must be a finite number, got %v", v)
		}
	})
	return err
}

func lookup(getenv func(string) string, name string) (string, bool) {
	if getenv == nil {
		return os.LookupEnv(name)
	}
	v := getenv(name)
	return v, v != ""
}

// Usage prints every flag with its variable and default.
func Usage(w io.Writer, fs *flag.FlagSet) { usage(w, fs, "") }

func usage(w io.Writer, fs *flag.FlagSet, summary string) {
	if summary != "" {
		fmt.Fprintf(w, "%s: %s\n\n", fs.Name(), summary)
	}
	fmt.Fprintf(w, "Usage of %s (every flag can also be set by its environment variable):\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  -%s, %s%s\n    \t%s\n", f.Name, EnvName(f.Name), def, f.Usage)
	})
}

// Invalid is a validation error that names the flag and its variable.
func Invalid(flagName, format string, args ...any) error {
	return fmt.Errorf("invalid -%s (%s): %s", flagName, EnvName(flagName), fmt.Sprintf(format, args...))
}

// FieldError is a validation error of one setting. A library caller reads
// it as the Go field to fix (Error); a command turns it into the flag and
// variable to fix (ForFlags).
type FieldError struct {
	Field  string // the Go field, e.g. "consumer.Config.HandlerTimeout"
	Flag   string // the command-line flag of that field, e.g. "handler-timeout"; "" if none
	Reason string // what is wrong, e.g. "must be positive, got -1s"
}

func (e *FieldError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Field returns a *FieldError for the Go field, whose flag is flagName.
func Field(field, flagName, format string, args ...any) error {
	return &FieldError{Field: field, Flag: flagName, Reason: fmt.Sprintf(format, args...)}
}

// ForFlags rewrites a *FieldError in err's chain as the error a command-line
// user needs: the flag and its variable instead of the Go field. Other
// errors are returned unchanged.
func ForFlags(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Flag != "" {
		return Invalid(fe.Flag, "%s", fe.Reason)
	}
	return err
}

// DatabaseName reports why name is not a MongoDB database name.
func DatabaseName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\\. \"$*<>:|?\x00") || len(name) > 63 {
		return fmt.Errorf("%q is not a database name: non-empty, at most 63 bytes, without '/', '\\', '.', '\"', '$', '*', '<', '>', ':', '|', '?' or spaces", name)
	}
	return nil
}
