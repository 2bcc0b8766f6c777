package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// FlagSet is a flag.FlagSet that reports errors as one line and prints its
// defaults only when asked (-h).
type FlagSet struct {
	*flag.FlagSet
	stderr io.Writer
}

// NewFlags returns the FlagSet of the command name ("ca sign"); -h prints
// its defaults to stderr.
func NewFlags(name string, stderr io.Writer) *FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &FlagSet{FlagSet: fs, stderr: stderr}
}

// Parse parses args as flag.FlagSet.Parse does, but its errors are exit
// codes: -h prints the defaults and exits 2 silently, a bad flag is a
// one-line usage error (exit 2).
func (fs *FlagSet) Parse(args []string) error {
	if err := fs.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(fs.stderr)
			fmt.Fprintf(fs.stderr, "usage of %s %s:\n", prog, fs.Name())
			fs.PrintDefaults()
			return Fail(2, "")
		}
		return Fail(2, "%s: %v (see '%s %s -h')", fs.Name(), err, prog, fs.Name())
	}
	return nil
}

// Reorder moves flags before positional arguments, so "lookup AOR --config F"
// works as well as "lookup --config F AOR". A flag without "=" takes the
// next argument as its value (FlagSet.ParseAnywhere knows the boolean
// flags, which take none).
func Reorder(args []string) []string { return reorder(args, func(string) bool { return false }) }

func reorder(args []string, isBool func(name string) bool) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && !isBool(strings.TrimLeft(a, "-")) && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

// ParseAnywhere is Parse with flags allowed after positional arguments
// (Reorder), boolean flags taking no value.
func (fs *FlagSet) ParseAnywhere(args []string) error {
	return fs.Parse(reorder(args, func(name string) bool {
		f := fs.Lookup(name)
		if f == nil {
			return false
		}
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		return ok && b.IsBoolFlag()
	}))
}

// StringList is a repeatable string flag.
type StringList []string

func (l *StringList) String() string     { return strings.Join(*l, ",") }
func (l *StringList) Set(s string) error { *l = append(*l, s); return nil }

// SplitList splits a comma-separated flag value, trimming spaces and
// dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// SplitInts splits a comma-separated flag value of integers, each in
// [lo, hi] (SplitList).
func SplitInts(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range SplitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		if n < lo || n > hi {
			return nil, fmt.Errorf("%d is not in [%d, %d]", n, lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}
