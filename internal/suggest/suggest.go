// Package suggest finds the name a mistyped one was probably meant to be
// (a config key, a command): the same but for case or '-' against '_', a
// prefix of it, or within two edits.
package suggest

import (
	"slices"
	"strings"
)

// Closest is the first of names (in sorted order) that word probably
// means, or "" if none is close.
func Closest(word string, names []string) string {
	norm := strings.ReplaceAll(strings.ToLower(word), "-", "_")
	sorted := slices.Sorted(slices.Values(names))
	for _, name := range sorted {
		n := strings.ReplaceAll(name, "-", "_")
		if n == norm || strings.HasPrefix(n, norm) && len(norm) >= 3 || len(norm) >= 4 && Distance(n, norm) <= 2 {
			return name
		}
	}
	// Short words: one edit.
	for _, name := range sorted {
		if len(norm) >= 2 && Distance(name, norm) <= 1 {
			return name
		}
	}
	return ""
}

// Distance is the Levenshtein distance of a and b (names are short:
// longer than 64 bytes counts as 64).
func Distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
