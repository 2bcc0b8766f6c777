package pki

import "errors"

// ErrConfig is returned for unusable CA directories, certificate, key and
// revocation-list files, and invalid issuing parameters.
var ErrConfig = errors.New("pki: invalid config")
