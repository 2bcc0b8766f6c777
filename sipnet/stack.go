package sipnet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// init lets sipgo send UDP datagrams of any size. It refuses those over
// 1300 bytes (sip.UDPMTUSize less 200), dropping a response and failing
// a request, which a browser's WebRTC offer or answer (2 to 5 KB) always
// is: a call between a browser and a UDP phone could not complete. RFC
// 3261 §18.1.1 would send such a request over TCP, which a UDP-only phone
// refuses; like Kamailio's default, the datagram is sent and fragmented.
// The same value for every stack in the process, set before any runs.
func init() { sip.UDPMTUSize = 65535 + 200 }

// socketBuffer is the UDP receive/send buffer: with the kernel's default
// buffers datagrams are dropped under load (Kamailio's clean REGISTER rate
// on this project's bench machine fell by a quarter to a half).
const socketBuffer = 4 << 20

// udpReaders is how many goroutines read the UDP socket at once: sipgo
// parses each datagram on the goroutine that read it, so one reader was
// a proxy's ceiling (the call bench saw the socket's buffer overflow at
// 3 000 calls a second, about 20 000 datagrams, with the process at 0.64
// of a core). sipgo hands every message parsed to a goroutine of its own
// anyway, so several readers reorder nothing that was ordered.
func udpReaders() int { return min(max(2, runtime.GOMAXPROCS(0)), 8) }

// Config configures a Stack. Zero values take the defaults per field.
type Config struct {
	// Addr is the host:port UDP and TCP are bound to (port 0 picks one
	// free for both). Required.
	Addr string
	// TLS, when set, also serves SIP over TLS (RFC 3261 §26.3.1) and
	// configures the TLS connections the stack opens.
	TLS *TLS
	// WS, when set, also serves SIP over WebSocket (RFC 7118).
	WS *WS
	// Logger; default slog.Default(). sipgo's own log is tagged
	// component=sip.
	Logger *slog.Logger
}

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return c, fmt.Errorf("%w: SIP address %q: %v", ErrConfig, c.Addr, err)
	}
	if c.TLS != nil && c.TLS.Addr != "" {
		if _, _, err := net.SplitHostPort(c.TLS.Addr); err != nil {
			return c, fmt.Errorf("%w: SIP TLS address %q: %v", ErrConfig, c.TLS.Addr, err)
		}
		if c.TLS.Config == nil {
			return c, fmt.Errorf("%w: SIP TLS address %s without a server config", ErrConfig, c.TLS.Addr)
		}
	}
	if err := c.WS.check(); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Stack is the SIP transport of a node: the sockets, the sipgo user agent
// and the server whose handlers the SIP roles register. It serves nothing
// until Serve.
type Stack struct {
	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	udp       *net.UDPConn
	tcp       net.Listener
	tls       net.Listener // nil without TLS
	ws        []*wsServer  // the ws:// and wss:// listeners (WS)
	wsCfg     *WS          // the stack's copy of Config.WS
	unhandled atomic.Pointer[func(*sip.Response)]
	stateless *stateless
	log       *slog.Logger

	ctx      context.Context
	cancel   context.CancelFunc
	mu       sync.Mutex // guards served, closed and the WaitGroups' Add against Close
	served   bool
	closed   bool
	wg       sync.WaitGroup // the serving goroutines
	handlers sync.WaitGroup // handlers running (on sipgo's goroutines)
}

// Listen binds UDP and TCP on cfg.Addr, and TLS when cfg.TLS names an
// address, and builds the user agent and server on them. Handlers are
// registered with Handle and HandleOther; Serve starts reading the
// sockets. A failed Listen leaves nothing open.
func Listen(cfg Config) (*Stack, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Stack{stateless: newStateless(), log: cfg.Logger}
	if err := s.open(cfg); err != nil {
		s.release()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// open binds the sockets and builds the user agent and server; on an
// error, release closes what it opened.
func (s *Stack) open(cfg Config) (err error) {
	if s.udp, s.tcp, err = bindBoth(cfg.Addr); err != nil {
		return err
	}
	_ = s.udp.SetReadBuffer(socketBuffer)
	_ = s.udp.SetWriteBuffer(socketBuffer)
	if cfg.WS != nil {
		w := *cfg.WS // HandleHTTP sets its Handler
		s.wsCfg = &w
		if s.ws, err = listenWS(s.wsCfg, cfg.Logger); err != nil {
			return err
		}
	}
	ws := func() *sip.TransportWS {
		return &sip.TransportWS{ReadTimeout: wsReadTimeout, WriteTimeout: wsWriteTimeout}
	}
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent("lsnode"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerUnhandledResponseHandler(s.unhandledResponse)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(s.readFilter),
			sip.WithTransportLayerTransports(sip.TransportsConfig{WS: ws(), WSS: &sip.TransportWSS{TransportWS: ws()}}))}
	if cfg.TLS != nil && cfg.TLS.Client != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(cfg.TLS.Client))
	}
	if s.ua, err = sipgo.NewUA(uaOpts...); err != nil {
		return fmt.Errorf("sipnet: %w", err)
	}
	if s.srv, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(cfg.Logger.With("component", "sip"))); err != nil {
		return fmt.Errorf("sipnet: %w", err)
	}
	if cfg.TLS != nil && cfg.TLS.Addr != "" {
		if s.tls, err = tls.Listen("tcp", cfg.TLS.Addr, cfg.TLS.Config); err != nil {
			return fmt.Errorf("sipnet: listen tls %s: %w", cfg.TLS.Addr, err)
		}
	}
	return nil
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
			return nil, nil, fmt.Errorf("sipnet: listen tcp %s: %w", addr, err)
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
			return nil, nil, fmt.Errorf("sipnet: listen udp %s: %w", addr, err)
		}
	}
	return nil, nil, errors.New("sipnet: no port free for both UDP and TCP")
}

// unhandledResponse passes a response that matches no client transaction
// to the hook set with OnUnhandledResponse; without one it is dropped.
func (s *Stack) unhandledResponse(r *sip.Response) {
	if h := s.unhandled.Load(); h != nil && s.enter() {
		defer s.handlers.Done()
		(*h)(r)
	}
}

// enter counts a handler in, unless the stack is closed: sipgo runs each
// on a goroutine of its own, and Close waits for them.
func (s *Stack) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// tracked wraps h so Close waits for it; after Close it runs no more.
func (s *Stack) tracked(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if !s.enter() {
			return
		}
		defer s.handlers.Done()
		h(req, tx)
	}
}

// mustNotServe panics once the stack serves: sipgo's handler table may
// not change then (a data race), so every role's handlers are registered
// before Serve.
func (s *Stack) mustNotServe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served {
		panic("sipnet: handler registered after Serve")
	}
}

// Handle registers h for requests of method; a later Handle of the same
// method replaces it. A handler answers on tx and returns; the server
// transaction ends when it returns. Register every handler before Serve
// (Handle panics after).
func (s *Stack) Handle(method sip.RequestMethod, h sipgo.RequestHandler) {
	s.mustNotServe()
	s.srv.OnRequest(method, s.tracked(h))
}

// HandleOther registers h for the methods no Handle took (by default they
// get 405); a later HandleOther replaces it. Before Serve, like Handle.
func (s *Stack) HandleOther(h sipgo.RequestHandler) {
	s.mustNotServe()
	s.srv.OnNoRoute(s.tracked(h))
}

// WriteResponse sends a response statelessly (a proxy passing on a 2xx
// retransmission), to the address its top Via names.
func (s *Stack) WriteResponse(r *sip.Response) error { return s.srv.WriteResponse(r) }

// UA is the stack's user agent (its transport and transaction layers),
// for the clients the roles build on it.
func (s *Stack) UA() *sipgo.UserAgent { return s.ua }

// Context is done once Close begins: handlers' work ends with the stack.
func (s *Stack) Context() context.Context { return s.ctx }

// Addr returns the bound address (host:port, the same for UDP and TCP).
func (s *Stack) Addr() string { return s.tcp.Addr().String() }

// TLSAddr returns the SIP over TLS address, or "" without TLS.
func (s *Stack) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Addr().String()
}

// OnUnhandledResponse sets who gets the responses that match no client
// transaction (a 2xx retransmission a proxy passes on); by default they
// are dropped.
func (s *Stack) OnUnhandledResponse(f func(*sip.Response)) { s.unhandled.Store(&f) }

// Serve starts reading the sockets, once: call it after every handler is
// in place. After Close it does nothing.
func (s *Stack) Serve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served || s.closed {
		return
	}
	s.served = true
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = s.srv.ServeTCP(s.tcp) }()
	for range udpReaders() {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); _ = s.srv.ServeUDP(s.udp) }()
	}
	if s.tls != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); _ = s.srv.ServeTLS(s.tls) }()
	}
	for _, w := range s.ws {
		s.wg.Add(2)
		go func() { defer s.wg.Done(); _ = w.serve() }()
		go func() {
			defer s.wg.Done()
			if w.ln.tlsSrv {
				_ = s.srv.ServeWSS(w.ln)
			} else {
				_ = s.srv.ServeWS(w.ln)
			}
		}()
	}
}

// HandleHTTP sets the handler of the HTTP requests on the WebSocket
// listeners that are not SIP handshakes (WS.Handler). Before Serve, like
// Handle; without WebSocket listeners it does nothing.
func (s *Stack) HandleHTTP(h http.Handler) {
	s.mustNotServe()
	if s.wsCfg != nil {
		s.wsCfg.Handler = h
	}
}

// WSAddr returns the ws:// listener's address, or "" without one.
func (s *Stack) WSAddr() string { return s.wsAddr(false) }

// WSSAddr returns the wss:// listener's address, or "" without one.
func (s *Stack) WSSAddr() string { return s.wsAddr(true) }

func (s *Stack) wsAddr(secure bool) string {
	for _, w := range s.ws {
		if w.ln.tlsSrv == secure {
			return w.tcp.Addr().String()
		}
	}
	return ""
}

// Close stops serving, closes the sockets and the user agent's
// connections, and waits for every goroutine Serve started and every
// handler still running (their Context is done). Close the roles whose
// goroutines send on the stack first: a connection opened after Close is
// nobody's to close.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.release()
	s.wg.Wait()
	s.handlers.Wait()
	return nil
}

// release closes whatever Listen opened.
func (s *Stack) release() {
	if s.udp != nil {
		s.udp.Close()
	}
	if s.tcp != nil {
		s.tcp.Close()
	}
	if s.tls != nil {
		s.tls.Close()
	}
	for _, w := range s.ws {
		w.close()
	}
	if s.ua != nil {
		s.ua.Close()
	}
}
