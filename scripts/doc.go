// Package scripts holds no Go code: its tests run the repository's shell
// scripts the way a new user meets them (scripts/deps), or on outputs
// made up to hit each case (scripts/targets --summary).
package scripts
