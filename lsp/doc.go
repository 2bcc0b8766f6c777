// Package lsp is the Location Service Protocol of draft-johnston-sipping-p2p-ipcom:
// canonical AOR keys (RFC 3261 §10.3), signed AOR→Contact bindings (RFC 3261
// §10, RFC 5626 instance/reg-id, RFC 3327 Path, RFC 3581 received), their
// versioned length-limited wire format, merge rules (per-binding CSeq order
// within a registration Call-ID, otherwise last writer
// wins, tombstones for removals), the replica store, and both faces of the
// protocol as libp2p stream protocols:
//
//	/lsp/<overlay>/store/1.0.0   replica ↔ replica (STORE, FETCH, REGISTER)
//	/lsp/<overlay>/client/1.0.0  registrar/proxy ↔ location service (PUT, GET)
//
// Every write is signed with the domain's credential: an X.509 certificate
// whose SAN covers the AOR's domain and chains to the overlay's trust anchors.
// A batch of bindings is signed once over a Merkle root; each binding carries
// its inclusion path, so replicas and readers verify one signature per batch
// and cache verified roots and certificate chains by fingerprint.
//
// The registrar/proxy-facing API is LocationService, implemented in-process by
// Service and remotely by Client. Service also implements Registry: a
// registrar's write in one round trip (REGISTER: replicas apply the RFC 3261
// Call-ID/CSeq rule themselves and answer with the AOR's record), with
// concurrent registrations coalesced into one signed batch and one message
// per replica.
package lsp
