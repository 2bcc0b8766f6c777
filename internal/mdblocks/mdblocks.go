// Package mdblocks finds the fenced code blocks of a Markdown document:
// what the tests that run the README's and the docs' commands, or check
// their configs, read.
package mdblocks

import (
	"regexp"
	"strings"
)

// Block is one fenced block: its info string (the language), its text
// with a list item's indentation taken off, and the line of its opening
// fence (1-based).
type Block struct {
	Lang string
	Text string
	Line int
}

var (
	fence  = regexp.MustCompile("(?ms)^( *)```([a-z]*)\n(.*?)^ *```")
	indent = regexp.MustCompile("(?m)^  ")
)

// Find returns md's fenced blocks of language lang ("" for every block),
// in order.
func Find(md []byte, lang string) []Block {
	var out []Block
	for _, m := range fence.FindAllSubmatchIndex(md, -1) {
		l := string(md[m[4]:m[5]])
		if lang != "" && l != lang {
			continue
		}
		text := string(md[m[6]:m[7]])
		if m[3] > m[2] { // a block in a list item
			text = indent.ReplaceAllString(text, "")
		}
		out = append(out, Block{Lang: l, Text: text, Line: 1 + strings.Count(string(md[:m[0]]), "\n")})
	}
	return out
}
