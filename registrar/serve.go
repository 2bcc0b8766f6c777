package registrar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// socketBuffer is the UDP receive/send buffer: with default buffers SIP
// throughput under load collapses (FIELD-NOTES).
const socketBuffer = 4 << 20

// Server serves a Registrar over UDP and TCP on one address.
type Server struct {
	ua     *sipgo.UserAgent
	udp    *net.UDPConn
	tcp    net.Listener
	tls    net.Listener // nil without TLS
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// TLS, when given to Listen, also serves SIP over TLS (RFC 3261 §26.3.1).
type TLS struct {
	Addr   string      // host:port; "" serves no TLS (Client still applies)
	Config *tls.Config // server side, with the domain certificate
	// Client is used for TLS connections the listener's stack opens (the
	// proxy's peering: client certificate and the peers it trusts).
	Client *tls.Config
}

// Listener is the SIP stack of a registrar's sockets, handed to Attachers.
type Listener struct {
	UA     *sipgo.UserAgent
	Server *sipgo.Server
	Addr   string // bound address, the same for UDP and TCP
	// TLSAddr is the SIP over TLS address, "" without TLS.
	TLSAddr string
	// OnUnhandledResponse sets who gets the responses that match no client
	// transaction (a 2xx retransmission a proxy passes on); by default they
	// are dropped.
	OnUnhandledResponse func(func(*sip.Response))
}

// Attacher adds handlers for other methods to a listener (the node's proxy
// shares the registrar's sockets).
type Attacher func(l *Listener) error

// Listen binds UDP and TCP on addr (host:port; port 0 picks one free for
// both), and TLS when tlsCfg is not nil, and serves r until Close. attach
// run after the registrar's handlers are in place.
func Listen(r *Registrar, addr string, tlsCfg *TLS, log *slog.Logger, attach ...Attacher) (s *Server, err error) {
	if log == nil {
		log = slog.Default()
	}
	udp, tcp, err := bindBoth(addr)
	if err != nil {
		return nil, err
	}
	_ = udp.SetReadBuffer(socketBuffer)
	_ = udp.SetWriteBuffer(socketBuffer)
	var unhandled atomic.Pointer[func(*sip.Response)]
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent("lsnode")}
	if tlsCfg != nil && tlsCfg.Client != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(tlsCfg.Client))
	}
	ua, err := sipgo.NewUA(append(uaOpts, sipgo.WithUserAgentTransactionLayerOptions(
		sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
			if h := unhandled.Load(); h != nil {
				(*h)(r)
			}
		})))...)
	if err != nil {
		udp.Close()
		tcp.Close()
		return nil, fmt.Errorf("registrar: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log.With("component", "sip")))
	if err != nil {
		ua.Close()
		udp.Close()
		tcp.Close()
		return nil, fmt.Errorf("registrar: %w", err)
	}
	var tlsLn net.Listener
	if tlsCfg != nil && tlsCfg.Addr != "" {
		if tlsLn, err = tls.Listen("tcp", tlsCfg.Addr, tlsCfg.Config); err != nil {
			ua.Close()
			udp.Close()
			tcp.Close()
			return nil, fmt.Errorf("registrar: listen tls %s: %w", tlsCfg.Addr, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s = &Server{ua: ua, udp: udp, tcp: tcp, tls: tlsLn, cancel: cancel}
	handle := func(req *sip.Request, tx sip.ServerTransaction) {
		res := r.Handle(ctx, req, req.Source())
		r.responses.Add(string(req.Method), res.StatusCode)
		if err := tx.Respond(res); err != nil {
			log.Debug("respond", "err", err)
		}
	}
	srv.OnRegister(handle)
	srv.OnNoRoute(handle) // 405 with Allow: REGISTER
	l := &Listener{UA: ua, Server: srv, Addr: tcp.Addr().String(),
		TLSAddr: func() string {
			if tlsLn == nil {
				return ""
			}
			return tlsLn.Addr().String()
		}(),
		OnUnhandledResponse: func(f func(*sip.Response)) { unhandled.Store(&f) }}
	for _, a := range attach {
		if err := a(l); err != nil {
			cancel()
			ua.Close()
			udp.Close()
			tcp.Close()
			if tlsLn != nil {
				tlsLn.Close()
			}
			return nil, err
		}
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = srv.ServeUDP(udp) }()
	go func() { defer s.wg.Done(); _ = srv.ServeTCP(tcp) }()
	if tlsLn != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); _ = srv.ServeTLS(tlsLn) }()
	}
	return s, nil
}

// bindBoth binds UDP and TCP on the same port.
func bindBoth(addr string) (*net.UDPConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: SIP address %q: %v", ErrConfig, addr, err)
	}
	for attempt := 0; attempt < 20; attempt++ {
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, nil, fmt.Errorf("registrar: listen tcp %s: %w", addr, err)
		}
		p := tcp.Addr().(*net.TCPAddr).Port
		ua, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, fmt.Sprint(p)))
		if err == nil {
			var udp *net.UDPConn
			if udp, err = net.ListenUDP("udp", ua); err == nil {
				return udp, tcp, nil
			}
		}
		tcp.Close()
		if port != "0" {
			return nil, nil, fmt.Errorf("registrar: listen udp %s: %w", addr, err)
		}
	}
	return nil, nil, errors.New("registrar: no port free for both UDP and TCP")
}

// Addr returns the bound address (host:port, the same for UDP and TCP).
func (s *Server) Addr() string { return s.tcp.Addr().String() }

// TLSAddr returns the TLS address, or "" without TLS.
func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Addr().String()
}

// Close stops serving and waits for the serving goroutines.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.udp.Close()
		s.tcp.Close()
		if s.tls != nil {
			s.tls.Close()
		}
		s.ua.Close()
		s.wg.Wait()
	})
	return nil
}
