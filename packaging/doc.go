// Package packaging holds no Go code: the systemd unit and the Debian
// package's files live here, and its test builds the package, installs
// it, runs it and purges it.
package packaging
