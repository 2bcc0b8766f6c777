// Package registrar is lsnode's SIP registrar front-end (RFC 3261 §10.3) on
// sipgo. It keeps no binding state of its own in stateless mode: each
// REGISTER becomes lsp.Publish/Remove into the overlay and the 200 OK lists
// the bindings read back through lsp.Lookup, so any number of front-ends of
// one domain answer alike. Digest authentication follows RFC 3261 §22 and
// RFC 8760 (MD5 and SHA-256) against HA1 hashes, with stateless HMAC nonces.
// RFC 5626 instance/reg-id, RFC 3327 Path and RFC 3581 received are kept in
// the binding.
package registrar
