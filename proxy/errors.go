package proxy

import "errors"

// ErrConfig is returned for an invalid Config.
var ErrConfig = errors.New("proxy: invalid config")
