package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestExit(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   int
		stderr string
	}{
		{nil, 0, ""},
		{Fail(1, "%s: not found", "sip:a@b.c"), 1, "lsnode: sip:a@b.c: not found\n"},
		{Fail(2, ""), 2, ""},
		{flag.ErrHelp, 2, ""},
		{errors.New("two\nlines"), 2, "lsnode: two\n  lines\n"},
		{UsageErr(nil, "x: want --y"), 2, "lsnode: x: want --y\n"},
		{UsageErr(Fail(3, "first"), "x: want --y"), 3, "lsnode: first\n"},
	} {
		var errb bytes.Buffer
		if code := Exit(tc.err, &errb); code != tc.code || errb.String() != tc.stderr {
			t.Errorf("Exit(%v): %d %q, want %d %q", tc.err, code, errb.String(), tc.code, tc.stderr)
		}
	}
}

func TestRun(t *testing.T) {
	const usage = "usage: lsnode <command>\n"
	var got []string
	cmds := Commands{
		"echo": func(_ context.Context, args []string, stdout, _ io.Writer) error {
			got = args
			return nil
		},
		"lost": func(context.Context, []string, io.Writer, io.Writer) error { return Fail(1, "lost") },
		"ca": Group("ca", Sub{"init", func(context.Context, []string, io.Writer, io.Writer) error { return nil }},
			Sub{"sign", func(_ context.Context, args []string, _, _ io.Writer) error { got = args; return nil }},
			Sub{"revoke", nil}),
	}
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{nil, 2, "", usage},
		{[]string{"help"}, 0, usage, ""},
		{[]string{"echo", "a", "b"}, 0, "", ""},
		{[]string{"lost"}, 1, "", "lsnode: lost\n"},
		{[]string{"frobnicate"}, 2, "", "lsnode: unknown command \"frobnicate\" (see 'lsnode help')\n"},
		{[]string{"ca"}, 2, "", "lsnode: ca: want 'init', 'sign' or 'revoke' (see 'lsnode help ca')\n"},
		{[]string{"ca", "x"}, 2, "", "lsnode: ca: unknown subcommand \"x\" (want init, sign or revoke)\n"},
		{[]string{"ca", "sign", "--dir", "d"}, 0, "", ""},
	} {
		var out, errb bytes.Buffer
		got = nil
		code := Run(context.Background(), cmds, usage, tc.args, &out, &errb)
		if code != tc.code || out.String() != tc.stdout || errb.String() != tc.stderr {
			t.Errorf("%q: %d %q %q, want %d %q %q", tc.args, code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
	if !slices.Equal(got, []string{"--dir", "d"}) {
		t.Errorf("ca sign got %q", got)
	}
	if g := Group("testnet", Sub{"init", nil}, Sub{"run", nil}); Exit(g(context.Background(), nil, nil, nil), io.Discard) != 2 {
		t.Error("a group without a subcommand is not exit 2")
	} else if err := g(context.Background(), nil, nil, nil); err.Error() != "testnet: want 'init' or 'run' (see 'lsnode help testnet')" {
		t.Errorf("group without a subcommand: %q", err)
	}
}

func TestParse(t *testing.T) {
	var errb bytes.Buffer
	fs := NewFlags("ca sign", &errb)
	dir := fs.String("dir", "", "the CA's directory")
	var sets StringList
	fs.Var(&sets, "set", "override, key=value; repeatable")
	if err := fs.Parse([]string{"--dir", "d", "--set", "a=1", "--set=b=2", "x"}); err != nil || *dir != "d" ||
		!slices.Equal(sets, StringList{"a=1", "b=2"}) || fs.Arg(0) != "x" || errb.Len() != 0 {
		t.Fatalf("parse: %v %q %q %q %q", err, *dir, sets, fs.Args(), errb.String())
	}

	err := NewFlags("ca sign", &errb).Parse([]string{"--bogus"})
	if code := Exit(err, &errb); code != 2 || errb.String() != "lsnode: ca sign: flag provided but not defined: -bogus (see 'lsnode ca sign -h')\n" {
		t.Errorf("bad flag: %d %q", code, errb.String())
	}

	// -h prints the defaults to stderr, and nothing else.
	errb.Reset()
	fs = NewFlags("id", &errb)
	fs.String("config", "", "node config file")
	if code := Exit(fs.Parse([]string{"-h"}), &errb); code != 2 ||
		errb.String() != "usage of lsnode id:\n  -config string\n    \tnode config file\n" {
		t.Errorf("-h: %d %q", code, errb.String())
	}
}

// TestParseAnywhere: flags after positional arguments, boolean ones taking
// no value.
func TestParseAnywhere(t *testing.T) {
	fs := NewFlags("x", io.Discard)
	file := fs.String("file", "", "")
	strict := fs.Bool("strict", false, "")
	if err := fs.ParseAnywhere([]string{"--strict", "bob", "--file", "f.json"}); err != nil || !*strict || *file != "f.json" || fs.NArg() != 1 || fs.Arg(0) != "bob" {
		t.Fatalf("ParseAnywhere: %v strict=%v file=%q args=%v", err, *strict, *file, fs.Args())
	}
}

func TestReorder(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{nil, nil},
		{[]string{"sip:a@b.c", "--config", "f"}, []string{"--config", "f", "sip:a@b.c"}},
		{[]string{"--config", "f", "sip:a@b.c"}, []string{"--config", "f", "sip:a@b.c"}},
		{[]string{"f1", "--set=a=1", "f2", "-set", "b=2"}, []string{"--set=a=1", "-set", "b=2", "f1", "f2"}},
		{[]string{"-", "f", "--timeout"}, []string{"--timeout", "-", "f"}},
	} {
		if got := Reorder(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Reorder(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplit(t *testing.T) {
	if got := SplitList(" a.example, ,b.example,"); !slices.Equal(got, []string{"a.example", "b.example"}) {
		t.Errorf("SplitList: %q", got)
	}
	if got, err := SplitInts("1, 0,200", 0, 200); err != nil || !slices.Equal(got, []int{1, 0, 200}) {
		t.Errorf("SplitInts: %v %v", got, err)
	}
	if got, err := SplitInts("", 0, 200); err != nil || got != nil {
		t.Errorf("SplitInts of nothing: %v %v", got, err)
	}
	for _, bad := range []string{"1,x", "-1", "201"} {
		if _, err := SplitInts(bad, 0, 200); err == nil {
			t.Errorf("SplitInts(%q) took it", bad)
		}
	}
}

func TestOutput(t *testing.T) {
	var out bytes.Buffer
	if err := PrintJSON(&out, map[string]any{"b": 1, "a": []string{"x"}}); err != nil ||
		out.String() != "{\n  \"a\": [\n    \"x\"\n  ],\n  \"b\": 1\n}\n" {
		t.Errorf("PrintJSON: %v %q", err, out.String())
	}
	out.Reset()
	log, err := NewLogger(&out, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if !strings.Contains(out.String(), `"msg":"shown"`) || strings.Contains(out.String(), "hidden") {
		t.Errorf("logger: %q", out.String())
	}
	for _, tc := range [][2]string{{"loud", "text"}, {"info", "xml"}} {
		var errb bytes.Buffer
		if _, err := NewLogger(io.Discard, tc[0], tc[1]); Exit(err, &errb) != 2 || !strings.Contains(errb.String(), "bad --log-") {
			t.Errorf("NewLogger(%q, %q): %v", tc[0], tc[1], err)
		}
	}
	v, err := BuildInfo("v1.2.3", "0123abcd")
	if err != nil || v["version"] != "v1.2.3" || v["commit"] != "0123abcd" || !strings.HasPrefix(v["go"], "go1.") {
		t.Errorf("BuildInfo: %v %v", v, err)
	}
}

// TestStdlibOnly: the package imports the standard library alone, and
// internal/suggest (which imports it alone too).
func TestStdlibOnly(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") && p != "github.com/lsnode/lsnode/internal/suggest" {
				t.Errorf("%s imports %s: internal/cli imports the standard library only", f, p)
			}
		}
	}
}
