// Package testnet builds and runs a local multi-node, multi-domain lsnode
// network for tests, benchmarks and demos: a CA, one credential per domain,
// demo users, one config file per node and a manifest (testnet.json) that
// scripts and later tools rely on. Its nodes start through package node,
// the same code path as a real node: in this process (Start), as processes
// on a network-namespace testbed (StartTestbed, StartBedNet), or as
// processes killed and restarted while bindings are published and read
// back (Chaos).
package testnet
