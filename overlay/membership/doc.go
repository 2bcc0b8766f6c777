// Package membership is one overlay node's view of who the members are:
// what one-hop replica placement (overlay.Closest) is computed from. It is
// a pure state machine (no I/O, no clock, no libp2p): its driver calls
// Tick and Receive with the time and hands it a Transport; overlay/sim
// runs the same code for 10 000+ members in virtual time.
//
// # Design notes
//
// The cost to stand still must not grow with the overlay (issue 17: the
// gossip of whole signed views it replaces sent 56 KB/s per node at 100
// members, linear in N). What each part costs a node:
//
//   - Failure detection (SWIM): each member probes its successor on four
//     rings (ring j orders members by bytes 8j..8j+8 of their Kademlia ID)
//     once per Period, round robin; an unanswered ping goes indirect
//     through two neighbours, then the prober signs an accusation. A
//     member is probed by about four others: O(1) per node, whatever N.
//
//   - Dissemination: a change (join, leave, accusation, new address) is
//     flooded along the successors of three of the four rings (two in
//     views of 8192 records or more: FloodRings, below) as an 18-byte
//     announcement (id hash, incarnation,
//     kind), news batched at most once per FlushEvery (a period, 5/4 of
//     one in views of 8192 records or more, where nearly every flush has
//     news: flushEvery; each message costs ~84 bytes of headers, more
//     than most announcements),
//     or sooner on a message the node sends the target anyway (news.go:
//     a probe, an answer to its fetch); a node fetches the signed entry
//     once (want → updates) and retries another announcer if the fetch
//     is lost. A node
//     holding the accused incarnation asks for the accusations alone
//     (flagHeld), and gets them in compact form (compactAcc: the ids as
//     8-byte hashes, rebuilt from its view; 100 bytes instead of 166
//     each; a rebuilt one that fails its signature is asked for again in
//     full, never a ban, since the view may hold a colliding id), so a
//     failure costs a view two compact accusations, not the entry again.
//     An older node's want (without field 2) is answered in full. The three rings make a random graph of out-degree
//     three: O(log N) hops, each node receives each change from about
//     three predecessors. Cost: O(changes), which with churn is the
//     one-hop bound (a full view must learn every change). At 10 000
//     members with churn (make sim) the fourth ring's announcements cost
//     a node 230 bytes a second (and spread a change 0.6 s faster at p99),
//     the accusations in full another 230. A push of each change to one
//     successor instead of the announcement (so a view need not fetch)
//     was measured and dropped: one push per change and node is a chain,
//     not a tree, so views waiting for their push spread changes 40%
//     slower (join p99 8.9 → 12.3 s) for 1% fewer bytes. What is pushed
//     is the start (seed, news.go): the member a change starts at sends
//     it whole at once to its ring neighbours, so the flood starts from
//     up to nine members a flush early. In a large view the neighbours
//     pass it on whole, at once, to theirs, and those once more (three
//     hops from 8192 records, two from 1024: SeedHops), so it starts
//     from a few hundred members; copies to a member that holds it are
//     dropped unchecked, and the seeds' reach is kept within a sixteenth
//     of the view, so they cost next to nothing. Started there, two
//     rings spread a change as fast as three from one hop: at 10 000
//     members with churn (make sim, 60 s window) one hop and three
//     rings sent 2007 bytes a second (join p99 9.47 s, failures 6.2 s);
//     one hop and two rings 1853 (11.05 s, 7.4 s); three hops and two
//     rings 1837 (9.04 s, 5.64 s); four hops, 2024 (8.24 s, 5.2 s: the
//     duplicates cost 190 bytes a second). Entries alone (joins, new
//     addresses, refutations) go the fourth hop (seedHopsOf): a join is
//     live in a view only Probation after it came there, so its spread
//     adds to 6 s, while a failure's does not wait. At 10 000 members
//     with churn over a 180 s window (make sim, LSNODE_SIM_SECONDS=180,
//     one run each, same seed): join p50 8.75 -> 7.85 s, p99 9.05 ->
//     8.11 s over ~360 joins, for 2008 -> 2036 bytes a second; failures
//     p99 6.17 -> 6.69 s (flushing every 1.2 s as well: 2017 bytes,
//     join p99 8.47 s, failures 6.98 s). An entry's seeds thus reach
//     about a quarter of a view of 10 000 (2700 members, 3100 pushes, in
//     a model of four random rings; in the sim, updates messages rose by
//     0.48 a second per node, some 2400 pushes a join), and those need
//     not fetch it. A made-up identity's join, or a ring neighbour's
//     mark on its entry (about 350 pushes), costs those pushes on top of
//     the flood's 10 000 fetches of three messages each: each push and
//     relay within its node's budget (seedBurst a Period), made-up
//     identities within MaxUnconfirmed. That and the news riding on
//     probes pay for flushing once a period instead of every half (at
//     10 000 members with churn, make sim, ticks of Period/5 as the
//     overlay's: 2253 → 1997 bytes a second, 12.0 → 9.1 messages, join
//     p99 9.26 → 9.36 s, failures 6.1 → 6.2 s; flushing every 1.2 s
//     sent 1929 but joins took 10.1 s).
//
//   - Anti-entropy: pings carry a digest (XOR of each member's last
//     stable version: a change enters it StableAfter after it was made,
//     and the version before it stays in until then, so views a change
//     has reached and views it has not yet reached agree), and two
//     mismatches in a row start a bucketed exchange (64 bucket digests;
//     then the items of the buckets that differ, or, past 128 items,
//     first the 16 leaf digests of each such bucket and then the items of
//     the leaves that differ), at most once per SyncEvery per peer, each
//     answer taken only when asked for. At 10 000 members a bucket's
//     items cost 2.8 KB and its leaf digests 144 bytes. Anti-entropy runs
//     between members that know each other; two parts that do not (a
//     partition each side has purged) are joined by Merge, a join's
//     exchange of views, which Heal starts with a bootstrap peer the view
//     does not hold (and one it holds dead is pinged).
//
//   - Tombstones: a dead or departed member is forgotten Tombstone after
//     its version was made, but retired for the last tenth before: held
//     (a copy sent back is not new) while out of the digest and never
//     sent, so a view that holds another version of it (another
//     prober's lone accusation, a second apart) cannot teach it to one
//     that has just forgotten it; the price: a view still holding the
//     member alive then is no longer corrected by anti-entropy. A join's
//     answer comes in several messages, in any order: a trusted answer's
//     accusation (or pair) whose accuser the joiner does not hold yet
//     waits for the rest (holdEarly: at most 1024, for SuspectTimeout,
//     only of a member held at that incarnation), and its confirmed
//     pairs count however old, so the joiner holds a dead member in the
//     answering view's version (taken as one lone accusation, the
//     joiner's retired at another time). Before these, the sim at 2000
//     members after a 400 s warm-up flooded several dead members back to
//     every view each minute (the joiner held them live and taught them
//     back after the purge): bytes a second 765–960, against 580–600
//     after a 20 s warm-up; with them, 592–683 (per change, as after 20 s).
//
//   - Suspicion needs two accusers (Lifeguard's confirmations, made
//     cheap): a prober whose probe failed holds its signed accusation
//     quietly and sends it (msgAccuse) only to the subject's other ring
//     predecessors, which probe it at once (once per probe period at
//     most). The member stays live and on the rings meanwhile. If one of
//     them fails too within LoneSuspect, its accusation confirms the
//     first: both are flooded together, the member leaves Closest and is
//     dead after SuspectTimeout. An answered probe drops a quiet
//     accusation; one neither refuted nor confirmed within LoneSuspect
//     is flooded by its accuser. A flooded lone accusation leaves the
//     member live for SuspectTimeout to refute, and counts only once it
//     and the incarnation it accuses are old enough (aged), so a liar
//     can make a member refute only that often. An overloaded prober's
//     false accusations (the storm 300 real nodes on 2 cores fell into)
//     and a single liar's thus cost no broadcast and move no replica.
//     An accuser pings the members dead on its word once per
//     SuspectTimeout until purged: if its spread was lost, an answer
//     gets the member its accusation to refute.
//
//   - Probation (the sybil defence): a member a third party announces is
//     not live (off the rings, in no replica set) until one incarnation
//     has stood Probation unaccused. Its probers (the members it follows
//     on a ring) probe it once each probation, apart from their ring
//     probes: the one whose probation ends first first, at most 16
//     started in any Probation/8, each failing within that (longer only
//     for a target whose own acks came slowly), so identities that stay on
//     probation (they keep re-signing) cannot take the turns meant for
//     one behind them. A prober ends its probation only once it has
//     answered a probe (else it is extended and probed again); the others
//     when it ends unaccused: an unreachable identity's probers accuse it
//     as a pair within that time. Members on probation are charged to the
//     group (/24) of the peer that told of them, a quarter of
//     MaxUnconfirmed each, for as long as they stay on probation. A
//     join's answer leaves out the members
//     on probation, an entry that came too soon after the last
//     (SuspectTimeout) is taken later, not dropped, and only members past
//     probation count in the density that judges whether an accuser is
//     near enough to its subject (plausible): a third party can add a
//     thousand members on probation, or departed, to any view.
//
//   - Lifeguard's local health: a node whose probes go unanswered, or that
//     must refute accusations of itself, stretches its timeouts and probe
//     period (up to 9×): an overloaded node stops accusing healthy ones.
//     A first probe of a peer (a connection to set up) gets 4× the time.
//     Each probe waits at least its target's retransmission timeout
//     (RFC 6298, from the target's own acks to warm probes, late ones
//     included, each sample and the timeout bounded by the 9×), so a
//     member on a slow path or a busy machine is not accused every few
//     probes; an ack that comes after its probe failed (late), within
//     twice that bound, withdraws this node's accusation of the target if
//     it has not spread. On 300 real nodes on 2 cores, the cycle of
//     false accusations, refutations, a signature check of each in every
//     view, more CPU and later acks kept the machine saturated after a
//     start. Only the target's and the asked helpers' acks count, and a
//     helper passes on only the target's own.
//
//   - Partial views (region.go): a node that cannot afford the full view
//     keeps one region of the id-hash space (RegionBits, at most a 64th),
//     a closed ball under the XOR metric, so Closest stays exact inside
//     it; its rings, flood and anti-entropy run within the region, and it
//     pays for the changes there alone. Every view rings only members of
//     its own kind (full, or regions of as many bits); the first member
//     of the other kind in each ring gap is probed and flooded to, which
//     bridges the two and probes a member alone of its kind; accusations
//     count across kinds, each judged at the density of its accuser's
//     rings and within its region. A partial view takes an accuser from
//     outside its region on its place alone, but such a stranger's word
//     never confirms another's. Keys outside the region are the
//     overlay's to route (kad-dht).
//
//   - Queries on the request path cost what they return, not N: Closest
//     (every lookup and registration's replica set) searches an index of
//     the view ordered by Kademlia prefix, kept in step with the view
//     once built (16 bytes a member, only in views that are asked);
//     LiveCount (the quorum's size) is counted again only on a change or
//     when a probation or a local suspicion runs out, so an idle view is
//     not walked at all. At 10 000 members a scan cost 0.3 ms and 0.6 ms
//     for them; the index answers in about 1 µs (BenchmarkClosest).
//
// Why our own protocol rather than hashicorp/memberlist: memberlist's
// entries are not signed (any member can declare any other dead or
// alive, which is fine in one operator's data centre and not on the open
// internet), its transport is its own UDP/TCP (we have authenticated
// libp2p streams and NAT handling already), and its push-pull state sync
// sends the whole view. What we kept from it: SWIM's probe → indirect
// probe → suspect → refute cycle with incarnations, and Lifeguard's local
// health multiplier and suspicion confirmations. What we added: signatures on every entry and
// accusation, accusations counted only from a plausible predecessor on a
// ring, probation for third-party members (the sybil defence), and
// announce/fetch dissemination with bucketed digests (so a change's bytes
// are paid once per node, not once per gossip round).
//
// The security properties and their tests are in docs/security.md
// ("Membership"). Figures: make sim (overlay/sim) and make scale (real
// nodes).
package membership
