// Package sipnet is the SIP transport lsnode's two SIP roles share: one
// sipgo user agent and server on UDP, TCP and TLS listeners bound to the
// same port (RFC 3261 §18), with large UDP socket buffers; TLS configs and
// TLS peer identity checks (RFC 5922); the address helpers that tell a UA
// behind a NAT (RFC 3581) and a sender on a trusted network; the RFC 5626
// flow tokens and flows of an edge proxy; counters of final responses;
// and stateless answering over UDP (HandleStateless): a method's requests
// are taken off the socket before sipgo makes a transaction of them, and
// their responses' bytes alone are kept to answer retransmissions; and
// load shedding on the UDP readers, from a request's bytes before it is
// parsed (ShedStateless for those methods, ShedNew for new transactions
// such as a proxy's INVITEs, with ShedInfo.Backlog, the kernel's count of
// the socket's unread datagrams).
//
// The registrar (REGISTER) and the proxy (every other method) each add
// their handlers to one Stack; neither knows the other. A node builds the
// Stack, then Flows, then both roles, registers their handlers, and only
// then calls Serve.
package sipnet
