package registrar

import "errors"

var (
	// ErrConfig is returned for an invalid Config.
	ErrConfig = errors.New("registrar: invalid config")
	// ErrUsers is returned for an unreadable or invalid users file.
	ErrUsers = errors.New("registrar: users file")
)
