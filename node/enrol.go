package node

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/lsnode/lsnode/overlay"
)

// Enrolment is a node for a federation CA to enrol ('lsnode ca sign'): by
// peer ID (the node's operator sends it, from 'lsnode id'), or by its
// config on this machine, which gives the defaults of Overlay and Out.
type Enrolment struct {
	Peer     string        // peer ID of the node, or
	Config   string        // config of the node (its identity is created if missing)
	Overlay  string        // overlay name (default: the config's)
	Out      string        // certificate file to write (default: the config's overlay.member_cert)
	Validity time.Duration // of the member certificate
}

// Enrolled is a member certificate Enrol signed, as 'lsnode ca sign'
// reports it.
type Enrolled struct {
	File     string `json:"file"`
	NotAfter string `json:"not_after"` // RFC 3339, UTC
	Overlay  string `json:"overlay"`
	Peer     string `json:"peer"`
	Serial   string `json:"serial"`
}

// Enrol signs the member certificate of e's node with the CA in caDir
// (pki.InitCA) and writes it to e.Out. Its errors name the flags of
// 'lsnode ca sign'.
func Enrol(caDir string, e Enrolment) (*Enrolled, error) {
	if (e.Peer == "") == (e.Config == "") {
		return nil, errors.New("ca sign: want one of --peer ID or --config FILE")
	}
	var id overlay.PeerID
	if e.Config != "" {
		cfg, pid, err := LoadPeerID(e.Config)
		if err != nil {
			return nil, err
		}
		id = pid
		e.Overlay = cmp.Or(e.Overlay, cfg.Overlay.Name)
		e.Out = cmp.Or(e.Out, cfg.Path(cfg.Overlay.MemberCert))
	} else {
		var err error
		if id, err = overlay.DecodePeerID(e.Peer); err != nil {
			return nil, fmt.Errorf("ca sign: --peer %q: %v", e.Peer, err)
		}
	}
	if e.Overlay == "" || e.Out == "" {
		return nil, errors.New("ca sign: want --overlay NAME and --out FILE (or a --config that names them)")
	}
	cert, err := overlay.SignMember(caDir, id, e.Overlay, e.Validity, e.Out)
	if err != nil {
		return nil, err
	}
	return &Enrolled{File: e.Out, NotAfter: cert.NotAfter.UTC().Format(time.RFC3339), Overlay: e.Overlay,
		Peer: id.String(), Serial: cert.SerialNumber.String()}, nil
}
