//go:build !linux

package sipnet

import "net"

// socketBacklog: this system does not tell (see backlog_linux.go).
func socketBacklog(*net.UDPConn) float64 { return 0 }
