// Package node is lsnode's composition root: it turns one Config (a YAML
// or JSON file, checked by internal/yamlconf) into a running node, and
// holds no protocol of its own.
//
// New runs start steps in order — credentials, overlay, location service
// (lsp), join, media relay, SIP (registrar and proxy on one sipnet stack),
// TURN relay, announce, TURN credentials over HTTP (httpapi), metrics,
// admin listener (admin), HTTP API (httpapi) — each starting one part when
// the config asks for it and pushing what stops it. A failed step, or
// Close, unwinds that stack in reverse; each part's Close waits for the
// goroutines it started, so a closed node leaves none behind.
//
// Each part registers its own Prometheus collectors on the node's registry
// (metrics.Metrics) and offers the snapshot its dashboard card shows; node
// only lists them (metrics.go) and composes the dashboard's state
// (state.go).
package node
