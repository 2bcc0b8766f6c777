package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/lsnode/lsnode/internal/suggest"
)

// prog is the program name errors and hints name.
const prog = "lsnode"

// Command runs a command given its arguments (after its name); an
// *ExitError, if it returns one, says the exit code.
type Command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Commands is a dispatch table: commands by name.
type Commands map[string]Command

// Run runs the command of cmds that args[0] names with the rest of args,
// and returns the process exit code (Exit). Without arguments it prints
// usage to stderr and exits 2; "help", "-h" and "--help" print it to
// stdout.
//
// "CMD -h" (or --help, anywhere among its arguments) prints CMD's part of
// usage to stdout and exits 0, as 'help CMD' does; an unknown command is
// a usage error that suggests the closest one.
func Run(ctx context.Context, cmds Commands, usage string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if args[0] == "help" || isHelp(args[0]) {
		return Exit(help(cmds, usage, args[1:], stdout), stderr)
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return Exit(unknown(cmds, args[0]), stderr)
	}
	if slices.ContainsFunc(args[1:], isHelp) {
		fmt.Fprint(stdout, Section(usage, args[0]))
		return 0
	}
	return Exit(cmd(ctx, args[1:], stdout, stderr), stderr)
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

// unknown is the usage error for a command cmds does not have.
func unknown(cmds Commands, name string) error {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		if !strings.HasPrefix(n, "-") {
			names = append(names, n)
		}
	}
	if c := suggest.Closest(name, names); c != "" {
		return Fail(2, "unknown command %q: did you mean '%s %s'? (see '%s help')", name, prog, c, prog)
	}
	return Fail(2, "unknown command %q (see '%s help')", name, prog)
}

// Section is the part of usage about command name: its entries (a line
// indented by two spaces that starts with name, and the lines indented
// further that follow it), under "usage:". Without one, all of usage.
func Section(usage, name string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   "):
			first, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			in = first == name
		case !strings.HasPrefix(line, "   "):
			in = false
		}
		if in {
			b.WriteString(line)
		}
	}
	if b.Len() == 0 {
		return usage
	}
	return "usage: " + prog + " <command> [flags]\n\n" + b.String()
}

// Exit returns the exit code for a command's error, having printed its
// message to stderr (further lines indented): 0 for nil; an *ExitError's code (and its
// message, if any); 2, silently, for flag.ErrHelp; 2 for any other error.
func Exit(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Msg != "" {
			fmt.Fprintln(stderr, prog+": "+ee.Msg)
		}
		return ee.Code
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	fmt.Fprintln(stderr, prog+": "+indented(err))
	return 2
}

// indented is err's message; one of several lines (a config's problems)
// keeps them, indented.
func indented(err error) string { return strings.ReplaceAll(err.Error(), "\n", "\n  ") }

// WithCode is err as an *ExitError of code, its message as Exit prints
// any error's.
func WithCode(code int, err error) error { return &ExitError{Code: code, Msg: indented(err)} }

// ExitError carries a process exit code, and a message unless the command
// printed its own.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Fail returns an *ExitError of code with a formatted message ("" for
// none).
func Fail(code int, format string, args ...any) error {
	return &ExitError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// UsageErr returns err, a flag error, or else a usage error (exit 2).
func UsageErr(err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	return Fail(2, format, args...)
}

// help prints usage to stdout, or with a command's name its part of it.
func help(cmds Commands, usage string, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if _, ok := cmds[args[0]]; !ok && args[0] != "help" {
		return unknown(cmds, args[0])
	}
	fmt.Fprint(stdout, Section(usage, args[0]))
	return nil
}

// Sub is a subcommand of a Group.
type Sub struct {
	Name string
	Run  Command
}

// Group is a command whose first argument names one of subs ("ca init",
// "ca sign"); without one, or with an unknown one, it is a usage error
// that lists them.
func Group(name string, subs ...Sub) Command {
	names := make([]string, len(subs))
	quoted := make([]string, len(subs))
	for i, s := range subs {
		names[i], quoted[i] = s.Name, "'"+s.Name+"'"
	}
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		if len(args) == 0 {
			return Fail(2, "%s: want %s (see '%s help %s')", name, orList(quoted), prog, name)
		}
		for _, s := range subs {
			if s.Name == args[0] {
				return s.Run(ctx, args[1:], stdout, stderr)
			}
		}
		return Fail(2, "%s: unknown subcommand %q (want %s)", name, args[0], orList(names))
	}
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
