// Package scripts holds no Go code: its tests run the repository's shell
// scripts (scripts/deps) the way a new user meets them.
package scripts
