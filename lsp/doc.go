// Package lsp is the Location Service Protocol of draft-johnston-sipping-p2p-ipcom:
// its one job is to keep AOR→Contact bindings in the overlay, signed by the
// AOR's domain, and hand them back verified.
//
// That is: canonical AOR keys (RFC 3261 §10.3), signed AOR→Contact bindings
// (RFC 3261 §10, RFC 5626 instance/reg-id, RFC 3327 Path, RFC 3581
// received), their versioned length-limited wire format, merge rules
// (per-binding CSeq order within a registration Call-ID, otherwise last
// writer wins, tombstones for removals), one quorum-write path and merged
// reads over R replicas, the replica store, and both faces of the protocol
// as stream protocols on the overlay (lsp speaks the overlay's stream
// vocabulary and never imports libp2p itself):
//
//	/lsp/<overlay>/store/1.0.0   replica ↔ replica (STORE, FETCH, REGISTER)
//	/lsp/<overlay>/client/1.0.0  registrar/proxy ↔ location service (PUT, GET, INFO, RELAYS)
//
// Every write is signed with the domain's credential: an X.509 certificate
// whose SAN covers the AOR's domain and chains to the overlay's trust anchors.
// A batch of bindings is signed once over a Merkle root; each binding carries
// its inclusion path, so replicas and readers verify one signature per batch
// and cache verified roots and certificate chains by fingerprint. A writer
// that proved to a replica it holds its key (holder.go) spares the replica
// even that: in an overlay much larger than R a batch touches R replicas per
// binding, so batching alone leaves about R checks per REGISTER. What a
// replica took unchecked is checked before it leaves the replica, and in
// the background within a budget (Config.BackgroundChecks), so that a read
// at a light load seldom waits for it.
//
// The registrar/proxy-facing API is LocationService, implemented in-process by
// Service and remotely by Client (NewClient over streams the caller has, or
// Dial). Service also implements Registry: a registrar's write in one round
// trip (REGISTER: replicas apply the RFC 3261 Call-ID/CSeq rule themselves
// and answer with the AOR's record), with concurrent registrations coalesced
// into one signed batch and one message per replica.
//
// Private records (Config.PrivateRecords, private.go) keep a record's AOR
// and bindings from its replicas: the record is stored under a hash of the
// canonical AOR (its domain in clear, for the signer check and the domain
// quota), each binding's identity and Call-ID become keyed hashes (enough
// for the replica's merge and CSeq order), and the binding itself is sealed
// (AES-256-GCM) under a key derived from the AOR, inside the signed content.
// Why this and not more: a replica must still verify who wrote a record
// (the domain), order a registration's writes (hidden Call-ID, CSeq in
// clear) and expire it (expiry in clear); everything else only a reader
// needs, and a reader knows the AOR. Keys come from the AOR alone, so any
// reader, in any domain, needs nothing but the AOR (no key distribution),
// and a guessable AOR is readable by whoever guesses it (docs/security.md).
//
// Files:
//
//	doc.go       this overview
//	errors.go    sentinel errors (ErrConfig, ErrForbidden, …) and their wire status codes
//	api.go       LocationService; building, signing and merging entries
//	aor.go       canonical AORs and keys
//	binding.go   Binding and the stored entry, merge order
//	private.go   private records: names, hiding and opening bindings
//	wire.go      the message and entry wire format
//	sign.go      Credential (Merkle-batch signing), Verifier (chains, cached roots)
//	holder.go    holder proofs: a writer's key bound to its peer; entries taken unchecked, vetted on the way out
//	config.go    Config and its defaults
//	service.go   Service: New, Close, goroutine lifetime, replica placement, calls to replicas
//	write.go     writes: Publish, Remove, and writeQuorum, the one write coordinator
//	vote.go      how the coordinator counts each replica's answer (no single-replica veto)
//	register.go  Register: coalescing registrations into signed REGISTER batches
//	read.go      reads: Lookup and the quorum read (fetch), read repair
//	batch.go     FETCHes to one replica batched while 8 are in flight
//	trace.go     Trace: a lookup recorded step by step for the dashboard
//	replica.go   the replica side: stream handlers, STORE/REGISTER/FETCH on the store
//	server.go    the client protocol's server side (PUT, GET, INFO, RELAYS)
//	store.go     the replica store: records, quotas, ghosts, persistence, placement
//	maintain.go  maintenance: re-replication, GC (one goroutine)
//	hints.go     hinted handoff: failed stores retried once the replica is back
//	distrust.go  replicas caught lying, skipped for a while
//	limit.go     per-peer token buckets on both protocols
//	stats.go     what the replica holds, for dashboards and metrics
//	metrics.go   its Prometheus collectors: the store, per-domain usage, operation latency
//	rpc.go       request/reply over pooled overlay streams
//	client.go    Client and ClientConfig
//	dial.go      Dial: a Client over a dialer of its own
package lsp
