// Package httpapi serves a node's HTTP endpoints for other SIP servers and
// their users:
//
//   - the HTTP API (docs/openapi.yaml, Listen): another SIP server (a
//     Kamailio or OpenSIPS registrar with its HTTP client module) publishes,
//     looks up and removes bindings through the node. Every request needs
//     "Authorization: Bearer <token>" with one of the configured tokens.
//     Writes are signed with the node's domain credential, so they are
//     limited to its domain's AORs (the Location says no to the others).
//   - TURN credentials (ListenTURN): GET /turn/credentials hands a SIP user
//     who authenticates with digest ephemeral TURN REST credentials. The
//     same handler (TURNCredentials) serves the softphone's page, its
//     challenges in a header a browser does not act on.
//
// Each reads the node through a small interface it declares (Location,
// DigestChecker, TURNIssuer) and starts nothing but its own server.
package httpapi
