package archtest

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/lsnode/lsnode"

// allowed is the import table of docs/architecture.md: the module's
// packages each may import (non-test code). A package missing here fails
// the test, so a new package must take its place in the table.
var allowed = map[string][]string{
	"pki":                nil,
	"sipnet":             {"internal/promsnap"},
	"metrics":            nil,
	"internal/yamlconf":  {"internal/suggest"},
	"internal/suggest":   nil,
	"internal/mdblocks":  nil,
	"internal/archtest":  nil,
	"scripts":            nil,
	"packaging":          nil,
	"internal/cli":       {"internal/suggest"},
	"overlay":            {"pki", "internal/promsnap", "overlay/membership"},
	"overlay/membership": nil,
	"overlay/sim":        {"overlay/membership"},
	"lsp":                {"overlay", "pki", "internal/promsnap"},
	"relay":              {"overlay", "internal/promsnap"},
	"registrar":          {"lsp", "sipnet"},
	"regevent":           {"lsp", "sipnet"},
	"proxy":              {"lsp", "relay", "sipnet", "internal/promsnap"},
	"admin":              {"lsp", "internal/httpserve"},
	"httpapi":            {"lsp", "internal/httpserve"},
	"softphone":          {"internal/httpserve"},
	"internal/httpserve": nil,
	"internal/promsnap":  nil,
	"node":               {"*"},
	"testnet":            {"node", "pki", "lsp", "overlay", "registrar"},
	"ua":                 {"lsp", "overlay"},
	"cmd/lsnode":         {"node", "testnet", "lsp", "pki", "registrar", "ua", "internal/cli"},
}

// libp2pAllowed may import libp2p (and multiaddr) in non-test code.
var libp2pAllowed = map[string]bool{"overlay": true}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
}

func packages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v: %s", err, errb.String())
	}
	var ps []pkg
	dec := json.NewDecoder(&out)
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 8 {
		t.Fatalf("go list found %d packages", len(ps))
	}
	return ps
}

func TestImportTable(t *testing.T) {
	for _, p := range packages(t) {
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		may, known := allowed[name]
		if !known {
			t.Errorf("package %s is not in the import table (internal/archtest, docs/architecture.md)", name)
			continue
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, "github.com/libp2p/") || strings.HasPrefix(imp, "github.com/multiformats/") {
				if !libp2pAllowed[name] {
					t.Errorf("%s imports %s: libp2p belongs to overlay", name, imp)
				}
				continue
			}
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if !slices.Contains(may, dep) && !slices.Contains(may, "*") {
				t.Errorf("%s imports %s: not in its row of the import table %v", name, dep, may)
			}
		}
	}
}

// maxLines is the longest a function may be without a comment saying why
// (a doc comment line starting "Long:").
const maxLines = 80

func TestFunctionLength(t *testing.T) {
	for _, p := range packages(t) {
		fset := token.NewFileSet()
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line
				if n > maxLines && !strings.Contains(fn.Doc.Text(), "Long:") {
					t.Errorf("%s: %s is %d lines; split it or say why in its doc comment (\"Long: ...\")",
						fset.Position(fn.Pos()), fn.Name.Name, n)
				}
			}
		}
	}
}

// TestThinMain: the CLI parses, calls and prints; the work lives in the
// library packages. A command is a file of its own (a group's
// subcommands share one) of at most 100 lines, and the whole CLI stays
// under 950 (23 commands and subcommand groups' worth of flags; it was
// 600 before 'domain' and 'user', 800 before 'domain aor' and 'ua').
func TestThinMain(t *testing.T) {
	const cmdLimit = 950
	for _, p := range packages(t) {
		var limit int
		switch strings.TrimPrefix(p.ImportPath, module+"/") {
		case "cmd/lsnode":
			limit = cmdLimit
		case "lsp":
			// lsp/service.go alone: the Service type and its wiring.
			b, err := os.ReadFile(filepath.Join(p.Dir, "service.go"))
			if err == nil && bytes.Count(b, []byte("\n")) >= 400 {
				t.Errorf("lsp/service.go is %d lines; it holds the Service and its wiring only", bytes.Count(b, []byte("\n")))
			}
			continue
		default:
			continue
		}
		lines := 0
		for _, f := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			n := bytes.Count(b, []byte("\n"))
			if n > 100 && limit == cmdLimit {
				t.Errorf("%s/%s is %d lines: a command file parses, calls and prints (limit 100)", p.ImportPath, f, n)
			}
			lines += n
		}
		if lines >= limit {
			t.Errorf("%s is %d lines of non-test code (limit %d)", p.ImportPath, lines, limit)
		}
	}
}
