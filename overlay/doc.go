// Package overlay is lsnode's Kademlia overlay: a libp2p host running kad-dht in
// server mode under a per-overlay protocol prefix (/lsp/<name>), a persistent
// identity, bootstrap from multiaddrs, an embedded datastore (leveldb on disk, or
// in memory), resource limits sized for many nodes per process, and replica
// placement: the R peers closest to a key under Kademlia's XOR metric.
//
// Replica placement is one-hop (Gupta, Liskov, Rodrigues 2004): every node keeps
// a full membership view, maintained by overlay/membership (SWIM-style probes on
// four rings, changes flooded as announcements, digest anti-entropy: a cost per
// node that grows with the changes, not with N), so the R closest peers to a
// key are computed locally without an iterative lookup. kad-dht's iterative
// GetClosestPeers is the fallback when that view may be wrong.
//
// Connections are bounded (TargetConns), not one per member. While a full view
// fits WarmConns (112 by default) a node keeps a connection to every member,
// protected from the connection manager and dialled in the background
// (warm.go), so a one-hop read or write never waits on a dial; beyond that
// its reads dial the replicas they need, as kad-dht's do. A full view also
// fills kad-dht's routing table (viewroutes.go) instead of kad-dht's
// bootstrap walk and periodic refresh, which dialled most members of the
// overlay at each join.
//
// The overlay knows nothing about SIP or bindings: keys are opaque strings.
package overlay
