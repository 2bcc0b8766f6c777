// Package admin is a node's operator HTTP listener: /healthz (the process
// answers), /readyz (the node should get traffic), /metrics (Prometheus),
// the dashboard (/dashboard/: static files embedded in the binary reading
// two JSON endpoints) and, when asked for, /debug/pprof/.
//
// It reads the node through the small Node interface and serves whatever
// metrics handler it is given; it starts nothing but its own server. The
// listener has no authentication: keep it on loopback or a management
// network.
package admin
