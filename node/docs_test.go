package node

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsConfigs: every complete node config in docs/ (a YAML block, or a
// heredoc in a shell block, with an overlay section) passes the checks
// 'lsnode config check' makes, so the quick starts stay copy-pasteable.
func TestDocsConfigs(t *testing.T) {
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs: %v", err)
	}
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```|<<'YAML'\n(.*?)\nYAML\n")
	checked := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllStringSubmatch(string(b), -1) {
			text := m[1] + m[2]
			if !strings.Contains(text, "\noverlay:") && !strings.HasPrefix(text, "overlay:") {
				continue // a fragment
			}
			c, err := parseConfig([]byte(text), nil)
			if err == nil {
				err = c.Validate()
			}
			if err != nil {
				t.Errorf("%s: a config does not pass the checks: %v\n%s", filepath.Base(doc), err, text)
			}
			checked++
		}
	}
	if checked < 3 {
		t.Fatalf("checked %d configs in docs/, want at least 3", checked)
	}
}
