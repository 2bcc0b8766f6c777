package sipnet

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// SIP over WebSocket (RFC 7118). The listeners are HTTP servers of our
// own: a request that asks for a WebSocket with the "sip" subprotocol, from
// an origin allowed, is taken off the HTTP server and handed to sipgo's WS
// transport (which answers the handshake and reads SIP messages off the
// frames); every other request goes to WS.Handler (the softphone page,
// TURN credentials), so a page and its SIP share one origin. sipgo's own
// listener would read each handshake in its accept loop with no deadline,
// so one client that connects and sends nothing would stop every other;
// here net/http reads requests, each on its goroutine, with a deadline.

const (
	// wsHeaderTimeout bounds the reading of a request's header.
	wsHeaderTimeout = 5 * time.Second
	// wsMaxHeader bounds a request's header.
	wsMaxHeader = 8 << 10
	// wsMaxConns bounds the WebSocket connections open on a listener
	// (each holds a goroutine and a 64 KB read buffer in sipgo), and
	// wsMaxPerIP those from one address, so one host cannot take them all.
	// Behind a carrier NAT or a web proxy many users share an address.
	wsMaxConns = 8192
	wsMaxPerIP = 64
	// wsReadTimeout closes a WebSocket that sent nothing for this long. A
	// registered UA's flow gets an OPTIONS each proxy.nat_keepalive (20 s),
	// which its answer follows; an idle one that never registered ends (one
	// that keeps sending CRLF keepalives stays: wsMaxPerIP bounds those).
	wsReadTimeout = 5 * time.Minute
	// wsWriteTimeout bounds one frame's write to a UA.
	wsWriteTimeout = 10 * time.Second
)

// WS, in a Config, serves SIP over WebSocket.
type WS struct {
	// Addr is the ws:// listener's host:port; "" serves none.
	Addr string
	// TLSAddr is the wss:// listener's host:port, with TLSConfig (the
	// domain certificate); "" serves none.
	TLSAddr   string
	TLSConfig *tls.Config
	// Origins are the Origin values ("https://host:port") whose pages may
	// open a SIP WebSocket besides the listener's own (the Origin whose
	// host and port are the request's Host). A request without Origin is
	// not a browser's and is let in (SIP digest, not the origin, is what
	// authorizes a UA).
	Origins []string
	// Handler serves the other HTTP requests on the listeners; nil: 404.
	Handler http.Handler
}

// check validates w (nil: no WebSocket).
func (w *WS) check() error {
	if w == nil {
		return nil
	}
	for _, a := range []string{w.Addr, w.TLSAddr} {
		if _, _, err := net.SplitHostPort(a); a != "" && err != nil {
			return fmt.Errorf("%w: SIP WebSocket address %q: %v", ErrConfig, a, err)
		}
	}
	if w.TLSAddr != "" && w.TLSConfig == nil {
		return fmt.Errorf("%w: SIP wss address %s without a certificate", ErrConfig, w.TLSAddr)
	}
	for _, o := range w.Origins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("%w: WebSocket origin %q is not scheme://host[:port]", ErrConfig, o)
		}
	}
	return nil
}

// wsListener is the net.Listener sipgo's WS transport accepts from: the
// connections the HTTP server handed over, their handshake request to be
// read again.
type wsListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	open   chan struct{} // a token per connection open (wsMaxConns)
	tlsSrv bool

	mu     sync.Mutex
	closed bool
	live   map[*replayConn]bool // handed over and not closed: Close closes them
	perIP  map[string]int
}

func newWSListener(addr net.Addr, tlsSrv bool) *wsListener {
	return &wsListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{}),
		open: make(chan struct{}, wsMaxConns), tlsSrv: tlsSrv, live: map[*replayConn]bool{}, perIP: map[string]int{}}
}

func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case <-l.done: // first: nothing is accepted once closing
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes every connection handed over (sipgo's
// pool may have been emptied before one of them joined it).
func (l *wsListener) Close() error {
	l.once.Do(func() { close(l.done) })
	l.mu.Lock()
	l.closed = true
	live := make([]*replayConn, 0, len(l.live))
	for c := range l.live {
		live = append(live, c)
	}
	l.mu.Unlock()
	for _, c := range live {
		c.Close()
	}
	return nil
}

// admit takes a place for a connection from ip: false when the listener
// is full, closed, or ip holds its share.
func (l *wsListener) admit(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.perIP[ip] >= wsMaxPerIP {
		return false
	}
	select {
	case l.open <- struct{}{}:
	default:
		return false
	}
	l.perIP[ip]++
	return true
}

// track registers c as live (false once closing: c is then not handed
// over); done gives its place back.
func (l *wsListener) track(c *replayConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.live[c] = true
	return true
}

func (l *wsListener) done1(c *replayConn, ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.live, c)
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
	<-l.open
}

func (l *wsListener) Addr() net.Addr { return l.addr }

// wsServer is one ws:// or wss:// listener.
type wsServer struct {
	tcp  net.Listener
	http *http.Server
	ln   *wsListener
}

// listenWS binds the listeners cfg names.
func listenWS(cfg *WS, log *slog.Logger) ([]*wsServer, error) {
	var out []*wsServer
	for _, l := range []struct {
		addr string
		tls  *tls.Config
	}{{cfg.Addr, nil}, {cfg.TLSAddr, cfg.TLSConfig}} {
		if l.addr == "" {
			continue
		}
		tcp, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, s := range out {
				s.tcp.Close()
			}
			return nil, fmt.Errorf("sipnet: listen ws %s: %w", l.addr, err)
		}
		s := &wsServer{tcp: tcp, ln: newWSListener(tcp.Addr(), l.tls != nil)}
		s.http = &http.Server{Handler: wsHandler(cfg, s.ln), ReadHeaderTimeout: wsHeaderTimeout,
			IdleTimeout: time.Minute, MaxHeaderBytes: wsMaxHeader, TLSConfig: l.tls,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			// HTTP/1.1 only: a handshake must be an Upgrade this handler
			// hands over, never an HTTP/2 extended CONNECT.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
		out = append(out, s)
	}
	return out, nil
}

// serve runs the HTTP server until close.
func (s *wsServer) serve() error {
	if s.ln.tlsSrv {
		return s.http.ServeTLS(s.tcp, "", "")
	}
	return s.http.Serve(s.tcp)
}

func (s *wsServer) close() {
	s.ln.Close()
	s.http.Close()
	s.tcp.Close()
}

// wsHandler takes SIP WebSocket handshakes to ln; the rest to
// cfg.Handler.
func wsHandler(cfg *WS, ln *wsListener) http.Handler {
	origins := map[string]bool{}
	for _, o := range cfg.Origins {
		origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !headerHas(r.Header, "Upgrade", "websocket") {
			if cfg.Handler == nil {
				http.NotFound(w, r)
				return
			}
			cfg.Handler.ServeHTTP(w, r)
			return
		}
		if status, why := wsRefusal(r, origins, ln.tlsSrv); status != 0 {
			http.Error(w, why, status)
			return
		}
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		if !ln.admit(ip) {
			w.Header().Set("Retry-After", "30")
			http.Error(w, "too many SIP WebSocket connections", http.StatusServiceUnavailable)
			return
		}
		handOver(w, r, ln, ip)
	})
}

// wsRefusal says why a WebSocket handshake is refused (an HTTP status and
// a reason), or 0.
func wsRefusal(r *http.Request, origins map[string]bool, secure bool) (int, string) {
	switch {
	case r.Method != http.MethodGet:
		return http.StatusMethodNotAllowed, "a WebSocket handshake is a GET"
	case !headerHas(r.Header, "Sec-WebSocket-Protocol", "sip"):
		return http.StatusBadRequest, `SIP over WebSocket needs the "sip" subprotocol (RFC 7118)`
	}
	o := r.Header.Get("Origin")
	if o == "" || origins[strings.ToLower(o)] {
		return 0, ""
	}
	u, err := url.Parse(o)
	scheme := "http"
	if secure {
		scheme = "https"
	}
	if err == nil && strings.EqualFold(u.Scheme, scheme) && strings.EqualFold(u.Host, r.Host) {
		return 0, ""
	}
	return http.StatusForbidden, "origin " + o + " may not open a SIP WebSocket here"
}

// headerHas reports whether a comma-separated header of h lists token.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// handOver takes the connection off the HTTP server and gives it to
// sipgo, which reads the handshake request again (from memory) and
// answers it.
func handOver(w http.ResponseWriter, r *http.Request, ln *wsListener, ip string) {
	var c *replayConn
	release := func() { ln.done1(c, ip) }
	hj, ok := w.(http.Hijacker)
	if !ok {
		release()
		http.Error(w, "connection cannot be upgraded", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		release()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\n", r.RequestURI, r.Host)
	_ = r.Header.Write(&req)
	req.WriteString("\r\n")
	pending, _ := rw.Reader.Peek(rw.Reader.Buffered())
	c = &replayConn{Conn: conn, r: io.MultiReader(&req, bytes.NewReader(bytes.Clone(pending))), release: release}
	if !ln.track(c) {
		c.Close()
		return
	}
	select {
	case ln.conns <- c:
	case <-ln.done:
		c.Close()
	}
}

// replayConn reads the bytes the HTTP server took first, then the
// connection; closing it gives back its token.
type replayConn struct {
	net.Conn
	mu      sync.Mutex
	r       io.Reader // nil once drained
	release func()
	once    sync.Once
}

func (c *replayConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.r != nil {
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r, err = nil, nil
		}
		c.mu.Unlock()
		if n > 0 || err != nil {
			return n, err
		}
	} else {
		c.mu.Unlock()
	}
	return c.Conn.Read(p)
}

func (c *replayConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
