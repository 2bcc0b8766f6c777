// Package cli is the command-line plumbing of lsnode's commands: flag
// parsing with one-line errors, the dispatch of commands and subcommands,
// exit codes, JSON output, loggers and the version report. It knows no
// command of its own: those live in cmd/lsnode, each a small file that
// parses flags, calls one library function and prints.
package cli
