// Package archtest holds no code: its tests keep the repository's layout
// true to docs/architecture.md — which package may import which, libp2p
// only inside overlay, no long function without a reason, a thin main.
package archtest
