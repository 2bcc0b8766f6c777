package overlay

import "errors"

var (
	// ErrConfig is returned for an invalid Config.
	ErrConfig = errors.New("overlay: invalid config")
	// ErrIdentity is returned when the identity key cannot be read or written.
	ErrIdentity = errors.New("overlay: identity key")
	// ErrBootstrap is returned when no bootstrap peer could be reached.
	ErrBootstrap = errors.New("overlay: bootstrap failed")
	// ErrClosed is returned by calls on a closed overlay.
	ErrClosed = errors.New("overlay: closed")
)
