package node

import "errors"

// ErrConfig is returned for an unreadable or invalid node config, and for
// a config a node cannot start with (a certificate that does not cover its
// domain, a listener address in use is not one: that is the listener's
// error).
var ErrConfig = errors.New("node: config")
