package sipnet

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NAT flows (RFC 5626 §5, the node's proxy as the edge proxy of the
// registrar on the same stack). A UA behind a NAT registers from a private
// Contact; only the socket its REGISTER reached can get a request back
// through the NAT (which lets in replies from where its packets went,
// nothing else), and only while the NAT remembers the mapping. So for such
// a binding:
//   - the registrar puts a Path first (Edge) that names this stack with a
//     flow token (the UA's public address and transport, under an HMAC
//     only this node can make): a proxy elsewhere that finds the binding
//     sends the request here, and the proxy here sends it down the flow;
//   - the proxy sends the UA an OPTIONS every so often until the binding
//     expires (Live lists the flows due), which keeps the NAT's mapping
//     open (any answer, or none: the request itself refreshes it).

// maxFlows bounds the flows kept alive (each is a few dozen bytes).
const maxFlows = 1 << 17

// Flow is a NAT flow: the public address a UA's REGISTER came from, over
// which transport, until when its binding lasts.
type Flow struct {
	Dest      string // host:port
	Transport string // UDP, TCP or TLS
	Until     time.Time
}

// Flows mints and checks flow tokens and keeps the live flows of one
// stack. Safe for concurrent use.
type Flows struct {
	secret  []byte
	self    hostPort // the stack's UDP/TCP address
	tlsSelf hostPort // its TLS address; zero without TLS

	mu sync.Mutex
	m  map[string]Flow // dest|tr → flow
}

type hostPort struct {
	host string
	port int
}

func parseHostPort(addr string) (hostPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return hostPort{}, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return hostPort{}, fmt.Errorf("port %q", port)
	}
	return hostPort{host, n}, nil
}

// NewFlows returns the flows of a stack bound to addr (and tlsAddr, ""
// without TLS) whose tokens secret keys. Keep secret across restarts (and
// the same on every front-end of a domain) so the Paths stored in the
// overlay stay valid.
func NewFlows(secret []byte, addr, tlsAddr string) (*Flows, error) {
	if len(secret) == 0 {
		return nil, fmt.Errorf("%w: no flow secret", ErrConfig)
	}
	self, err := parseHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: flow address %q: %v", ErrConfig, addr, err)
	}
	f := &Flows{secret: secret, self: self, m: map[string]Flow{}}
	if tlsAddr != "" {
		if f.tlsSelf, err = parseHostPort(tlsAddr); err != nil {
			return nil, fmt.Errorf("%w: flow TLS address %q: %v", ErrConfig, tlsAddr, err)
		}
	}
	return f, nil
}

// Edge is the registrar's hook (registrar.Config.Edge) for a binding that
// came through a NAT from source over transport (as the REGISTER did),
// valid until until (zero: removed). It keeps the flow alive and returns
// the Path value that routes requests for the binding through this stack
// and down the flow; "" when the flow cannot be used.
func (f *Flows) Edge(source, transport string, until time.Time) string {
	tr := strings.ToUpper(transport)
	if tr != "UDP" && tr != "TCP" && tr != "TLS" && tr != "WS" && tr != "WSS" {
		return ""
	}
	if _, _, err := net.SplitHostPort(source); err != nil {
		return ""
	}
	f.mu.Lock()
	k := source + "|" + tr
	switch {
	case until.IsZero() || !until.After(time.Now()):
		delete(f.m, k)
	case len(f.m) < maxFlows || f.m[k].Dest != "":
		f.m[k] = Flow{Dest: source, Transport: tr, Until: until}
	}
	f.mu.Unlock()
	return f.URI(source, tr)
}

// URI is the Path or Record-Route value naming this stack with the flow
// token of dest over tr (UDP, TCP, TLS, WS or WSS). Other proxies reach
// this stack over the flow's transport, or for a WebSocket's over UDP
// (WS) and TLS (WSS): they cannot open a WebSocket to a UA's flow, and a
// UA sends every request over its own WebSocket whatever a route says.
func (f *Flows) URI(dest, tr string) string {
	reach := tr
	switch tr {
	case "WS":
		reach = "UDP"
	case "WSS":
		reach = "TLS"
	}
	self := f.self
	switch {
	case reach == "TLS" && f.tlsSelf.port != 0:
		self = f.tlsSelf
	case tr == "WSS": // no TLS listener: the stack's TCP one
		reach = "TCP"
	}
	uri := "sip:" + f.Token(dest, tr) + "@" + net.JoinHostPort(self.host, strconv.Itoa(self.port)) + ";lr;ob"
	if reach != "UDP" {
		uri += ";transport=" + strings.ToLower(reach)
	}
	return "<" + uri + ">"
}

// Token is base64url(dest "|" tr) "." base64url(HMAC-SHA256 of it)[:16].
func (f *Flows) Token(dest, tr string) string {
	body := []byte(dest + "|" + tr)
	mac := hmac.New(sha256.New, f.secret)
	mac.Write(body)
	return base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:12])
}

// Parse returns the flow a token names, if these flows made it.
func (f *Flows) Parse(tok string) (dest, tr string, ok bool) {
	if len(tok) > 256 {
		return "", "", false
	}
	b64, _, found := strings.Cut(tok, ".")
	if !found {
		return "", "", false
	}
	body, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return "", "", false
	}
	dest, tr, found = strings.Cut(string(body), "|")
	if !found || !hmac.Equal([]byte(f.Token(dest, tr)), []byte(tok)) {
		return "", "", false
	}
	return dest, tr, true
}

// Live forgets the flows expired at now and returns the others (those a
// NAT keepalive is due for).
func (f *Flows) Live(now time.Time) []Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var due []Flow
	for k, fl := range f.m {
		if now.After(fl.Until) {
			delete(f.m, k)
			continue
		}
		due = append(due, fl)
	}
	return due
}

// Len returns how many flows are kept alive.
func (f *Flows) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}
