// Package pki is lsnode's X.509 work, in one place for the overlay, lsp,
// testnet and the CLI: certificate authorities (a testnet's, or a
// federation CA kept in a directory: lsnode ca), domain certificates (the
// credential a registrar signs its writes with), member certificates (a
// federation overlay's admission, RFC 6940 §11-style enrollment: issued for
// a node's Ed25519 identity and one overlay's name), revocation lists
// (RFC 5280 CRLs) and private-network keys.
//
// It issues; it does not verify admission (package overlay does) and it
// knows nothing of libp2p: a member certificate is issued for an Ed25519
// public key and a peer ID given as text.
package pki
