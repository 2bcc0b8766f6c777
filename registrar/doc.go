// Package registrar is lsnode's stateless REGISTER front-end: it turns
// each REGISTER (RFC 3261 §10.3) into bindings in the location service
// (lsp), keeping no binding state of its own in stateless mode. A
// REGISTER becomes lsp.Publish/Remove into the overlay and the 200 OK
// lists the bindings read back through lsp.Lookup, so any number of
// front-ends of one domain answer alike. Digest authentication follows
// RFC 3261 §22 and RFC 8760 (MD5 and SHA-256) against HA1 hashes, with
// stateless HMAC nonces. RFC 5626 instance/reg-id, RFC 3327 Path and
// RFC 3581 received are kept in the binding; a binding from behind a NAT
// gets the Path of the node's flow (Config.Edge, sipnet.Flows).
//
// The registrar serves on a sipnet.Stack it is attached to (Attach) and
// knows nothing of the proxy that may share it.
package registrar
