package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/lsnode/lsnode/sipnet"
)

// TLS peer identity (RFC 5922; the certificate checks are sipnet's). The
// stack's TLS client checks only that a peer's certificate chains to the
// trust anchors (it dials addresses, not names); whose certificate it is,
// is checked here, where the proxy knows which domain it is sending to:
// before a request leaves on a TLS connection, the peer's certificate must
// name that domain (sipnet.ErrPeerIdentity otherwise). As a server, the
// domain of a peer's client certificate is the only one it may send
// requests from (peerPolicy).

// transaction starts out's client transaction. For a TLS target whose
// domain is known, the connection's peer must present a certificate of
// that domain, or nothing is sent.
func (p *Proxy) transaction(ctx context.Context, out *sip.Request, t target) (sip.ClientTransaction, error) {
	if t.tr != "TLS" || t.peer == "" || p.txl == nil {
		return p.client.TransactionRequest(ctx, out, asIs)
	}
	tx, err := p.txl.NewClientTransaction(ctx, out)
	if err != nil {
		return nil, err
	}
	if err := sipnet.CheckPeer(tx.Connection(), t.peer); err != nil {
		tx.Terminate()
		return nil, fmt.Errorf("%s: %w", t.dest, err)
	}
	if err := tx.Init(); err != nil {
		tx.Terminate()
		return nil, err
	}
	return tx, nil
}

// tlsPeerDomains returns the domains of the client certificate of the TLS
// connection req came on: nil when it came on no TLS connection or one
// without a client certificate; ok false when the connection is gone (the
// request is then refused: no identity, no benefit of the doubt).
func (p *Proxy) tlsPeerDomains(req *sip.Request) (domains []string, ok bool) {
	if p.tpl == nil || !strings.EqualFold(req.Transport(), "TLS") {
		return nil, true
	}
	conn, err := p.tpl.GetConnection("tls", req.Source())
	if err != nil || conn == nil {
		return nil, false
	}
	if c := sipnet.PeerCert(conn); c != nil {
		return sipnet.CertDomains(c), true
	}
	return nil, true
}

// writeStateless sends out (an ACK) to t without a transaction; on a TLS
// connection only to a peer of t.peer, as transaction does (connecting
// for at most 5 s).
func (p *Proxy) writeStateless(ctx context.Context, out *sip.Request, t target) error {
	if !p.wsConnected(t) {
		return fmt.Errorf("%s: WebSocket UA not connected", t.dest)
	}
	if t.tr != "TLS" || t.peer == "" || p.tpl == nil {
		return p.client.WriteRequest(out, asIs)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := p.tpl.ClientRequestConnection(ctx, out)
	if err != nil {
		return err
	}
	defer conn.TryClose() // as sipgo's own WriteRequest does
	if err := sipnet.CheckPeer(conn, t.peer); err != nil {
		return fmt.Errorf("%s: %w", t.dest, err)
	}
	return conn.WriteMsg(out)
}
