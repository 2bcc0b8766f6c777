package relay

import "errors"

// ErrConfig is returned for an invalid relay configuration.
var ErrConfig = errors.New("relay: config")
