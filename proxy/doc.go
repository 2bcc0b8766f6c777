// Package proxy is lsnode's SIP peer proxy and redirect server (RFC 3261
// §16, draft-johnston-sipping-p2p-ipcom §3): it looks the Request-URI's AOR
// up in the overlay and sends the request straight to the callee's Contact,
// so the callee domain's own proxy is not on the path. AORs the overlay does
// not know go to configured static peers, then to RFC 3263 DNS targets.
// It forks (§16.7), record-routes with tokens only it can mint, refuses to
// be an open relay, follows RFC 5626 flows down to UAs behind a NAT and
// anchors media on a relay by policy.
//
// The proxy serves on a sipnet.Stack it is attached to (Attach) beside the
// node's registrar, which it does not know: the node hands it the
// registrar's location, user list and proxy authentication as Config
// funcs.
package proxy
