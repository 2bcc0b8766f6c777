package lsp

import (
	"errors"
	"fmt"
)

var (
	// ErrBadAOR: the AOR is not a URI lsp can key.
	ErrBadAOR = errors.New("lsp: bad AOR")
	// ErrInvalid: a binding or request is semantically invalid (expired,
	// timestamp in the future beyond the skew bound, field out of range).
	ErrInvalid = errors.New("lsp: invalid binding")
	// ErrMalformed: bytes on the wire do not decode.
	ErrMalformed = errors.New("lsp: malformed message")
	// ErrTooLarge: a message or field exceeds its limit.
	ErrTooLarge = errors.New("lsp: too large")
	// ErrForbidden: a signature, certificate or authority check failed.
	ErrForbidden = errors.New("lsp: forbidden")
	// errForged marks an ErrForbidden that no honest node produces: a
	// signature that does not verify, or an entry its certificate does not
	// cover. A replica that serves one is distrusted.
	errForged = errors.New("forged")
	// ErrNoCredential: this node holds no domain credential, so it cannot write.
	ErrNoCredential = errors.New("lsp: no domain credential")
	// ErrUnavailable: not enough replicas answered (write or read quorum).
	ErrUnavailable = errors.New("lsp: replicas unavailable")
	// ErrNotJoined: this node has not joined its overlay yet, so it cannot
	// place a key (its view may lack the replicas). It is ErrUnavailable.
	ErrNotJoined = fmt.Errorf("%w: this node has not joined the overlay yet", ErrUnavailable)
	// ErrRemote: the remote side failed for a reason of its own.
	ErrRemote = errors.New("lsp: remote error")
	// ErrOutOfOrder: a replica holds the same binding from the same Call-ID
	// with an equal or higher CSeq (RFC 3261 §10.3 step 7).
	ErrOutOfOrder = errors.New("lsp: request out of order")
	// ErrRecordsMode: a write kept in clear on an overlay of private
	// records, or private on one in clear (Config.PrivateRecords): the
	// writer's config disagrees with the replica's.
	ErrRecordsMode = errors.New("lsp: record kept unlike this overlay keeps records (overlay.records)")
	// ErrClosed: the service is closed.
	ErrClosed = errors.New("lsp: closed")
	// ErrConfig: a Config, ClientConfig or DialConfig is missing a
	// required field or holds an impossible value.
	ErrConfig = errors.New("lsp: bad config")
)

// Status codes carried in error replies (HTTP/SIP-like).
const (
	statusOK          = 0
	statusMalformed   = 400
	statusForbidden   = 403
	statusTooLarge    = 413
	statusConflict    = 409
	statusMode        = 412
	statusInvalid     = 422
	statusInternal    = 500
	statusUnavailable = 503
)

func statusOf(err error) uint64 {
	switch {
	case err == nil:
		return statusOK
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrBadAOR):
		return statusMalformed
	case errors.Is(err, ErrForbidden):
		return statusForbidden
	case errors.Is(err, ErrTooLarge):
		return statusTooLarge
	case errors.Is(err, ErrInvalid):
		return statusInvalid
	case errors.Is(err, ErrOutOfOrder):
		return statusConflict
	case errors.Is(err, ErrRecordsMode):
		return statusMode
	case errors.Is(err, ErrUnavailable):
		return statusUnavailable
	}
	return statusInternal
}

func errOfStatus(code uint64) error {
	switch code {
	case statusMalformed:
		return ErrMalformed
	case statusForbidden:
		return ErrForbidden
	case statusTooLarge:
		return ErrTooLarge
	case statusInvalid:
		return ErrInvalid
	case statusConflict:
		return ErrOutOfOrder
	case statusMode:
		return ErrRecordsMode
	case statusUnavailable:
		return ErrUnavailable
	}
	return ErrRemote
}
