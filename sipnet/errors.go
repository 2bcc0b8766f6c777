package sipnet

import "errors"

var (
	// ErrConfig is returned for an invalid Config, TLS files or flow
	// secret.
	ErrConfig = errors.New("sipnet: invalid config")
	// ErrPeerIdentity: a TLS peer's certificate does not name the domain
	// a request is sent to (RFC 5922).
	ErrPeerIdentity = errors.New("sipnet: TLS peer identity")
)
