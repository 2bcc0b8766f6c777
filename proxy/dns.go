package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
)

// Resolver finds the servers of a SIP URI by RFC 3263: NAPTR, then SRV
// (priority, then weight), then A/AAAA, against one DNS server.
type Resolver struct {
	server  string
	timeout time.Duration
	client  *dns.Client
}

// DNSTarget is one server to try, in order.
type DNSTarget struct {
	Addr      string // ip:port
	Transport string // UDP, TCP or TLS
}

// ErrNoTarget: DNS names no server for the URI.
var ErrNoTarget = errors.New("proxy: no DNS target")

// NewResolver queries server ("host:port"); "" reads /etc/resolv.conf.
func NewResolver(server string, timeout time.Duration) (*Resolver, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return nil, fmt.Errorf("%w: no DNS server configured and none in /etc/resolv.conf", ErrConfig)
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		return nil, fmt.Errorf("%w: DNS server %q: %v", ErrConfig, server, err)
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return &Resolver{server: server, timeout: timeout, client: &dns.Client{Net: "udp", Timeout: timeout}}, nil
}

// naptrTransport maps an RFC 3263 NAPTR service to a transport.
func naptrTransport(service string) (string, bool) {
	switch strings.ToUpper(service) {
	case "SIP+D2U":
		return "UDP", true
	case "SIP+D2T":
		return "TCP", true
	case "SIPS+D2T":
		return "TLS", true
	}
	return "", false
}

// Targets lists the servers for u in the order RFC 3263 says to try them.
func (r *Resolver) Targets(ctx context.Context, u sip.Uri) ([]DNSTarget, error) {
	host := strings.Trim(u.Host, "[]")
	if m, ok := u.UriParams.Get("maddr"); ok && m != "" {
		host = m
	}
	secure := strings.EqualFold(u.Scheme, "sips")
	tr := ""
	if v, ok := u.UriParams.Get("transport"); ok && v != "" {
		tr = strings.ToUpper(v)
		if tr == "TCP" && secure {
			tr = "TLS"
		}
	}
	defPort := func(tr string) int {
		if tr == "TLS" {
			return 5061
		}
		return 5060
	}
	// §4.1/4.2: a numeric host or an explicit port skips NAPTR and SRV.
	if ip := net.ParseIP(host); ip != nil || u.Port != 0 {
		if tr == "" {
			tr = "UDP"
			if secure {
				tr = "TLS"
			}
		}
		port := u.Port
		if port == 0 {
			port = defPort(tr)
		}
		if ip != nil {
			return []DNSTarget{{Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), Transport: tr}}, nil
		}
		ips, err := r.addrs(ctx, host)
		if err != nil {
			return nil, err
		}
		return targetsFor(ips, port, tr), nil
	}
	var srvs []srvName
	if tr == "" {
		var err error
		if srvs, err = r.naptr(ctx, host, secure); err != nil {
			return nil, err
		}
	}
	if len(srvs) == 0 {
		// §4.1: no NAPTR: SRV for the transports we support.
		switch {
		case tr != "":
			srvs = []srvName{{srvPrefix(tr) + dns.Fqdn(host), tr}}
		case secure:
			srvs = []srvName{{"_sips._tcp." + dns.Fqdn(host), "TLS"}}
		default:
			srvs = []srvName{{"_sip._udp." + dns.Fqdn(host), "UDP"}, {"_sip._tcp." + dns.Fqdn(host), "TCP"}}
		}
	}
	out, err := r.srv(ctx, srvs)
	if err != nil || len(out) > 0 {
		return out, err
	}
	// §4.2: no SRV either: the host's addresses on the default port.
	if tr == "" {
		tr = "UDP"
		if secure {
			tr = "TLS"
		}
	}
	ips, err := r.addrs(ctx, host)
	if err != nil {
		return nil, err
	}
	return targetsFor(ips, defPort(tr), tr), nil
}

// srvName is an SRV name to look up, and the transport of its servers.
type srvName struct{ name, tr string }

// naptr returns the SRV names host's NAPTR records point to (RFC 3263
// §4.1), in their order: only transports we support, only TLS for sips.
func (r *Resolver) naptr(ctx context.Context, host string, secure bool) ([]srvName, error) {
	naptrs, err := r.query(ctx, host, dns.TypeNAPTR)
	if err != nil {
		return nil, err
	}
	var ns []*dns.NAPTR
	for _, rr := range naptrs {
		if n, ok := rr.(*dns.NAPTR); ok && strings.EqualFold(n.Flags, "s") {
			if t, ok := naptrTransport(n.Service); ok && (!secure || t == "TLS") {
				ns = append(ns, n)
			}
		}
	}
	slices.SortStableFunc(ns, func(a, b *dns.NAPTR) int {
		if a.Order != b.Order {
			return int(a.Order) - int(b.Order)
		}
		return int(a.Preference) - int(b.Preference)
	})
	var srvs []srvName
	for _, n := range ns {
		t, _ := naptrTransport(n.Service)
		srvs = append(srvs, srvName{n.Replacement, t})
	}
	return srvs, nil
}

// srv resolves SRV names to their servers' addresses, in the order of
// RFC 2782 (priority, then weighted random choice) within each name, the
// names in order.
func (r *Resolver) srv(ctx context.Context, srvs []srvName) ([]DNSTarget, error) {
	var out []DNSTarget
	for _, s := range srvs {
		rrs, err := r.query(ctx, s.name, dns.TypeSRV)
		if err != nil {
			return nil, err
		}
		var recs []*dns.SRV
		for _, rr := range rrs {
			if v, ok := rr.(*dns.SRV); ok && v.Target != "." {
				recs = append(recs, v)
			}
		}
		for _, v := range orderSRV(recs) {
			ips, err := r.addrs(ctx, v.Target)
			if err != nil {
				continue
			}
			out = append(out, targetsFor(ips, int(v.Port), s.tr)...)
		}
	}
	return out, nil
}

func srvPrefix(tr string) string {
	switch tr {
	case "TCP":
		return "_sip._tcp."
	case "TLS":
		return "_sips._tcp."
	}
	return "_sip._udp."
}

func targetsFor(ips []net.IP, port int, tr string) []DNSTarget {
	out := make([]DNSTarget, len(ips))
	for i, ip := range ips {
		out[i] = DNSTarget{Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), Transport: tr}
	}
	return out
}

// orderSRV sorts by priority and, within one priority, by the weighted
// random selection of RFC 2782.
func orderSRV(recs []*dns.SRV) []*dns.SRV {
	slices.SortStableFunc(recs, func(a, b *dns.SRV) int { return int(a.Priority) - int(b.Priority) })
	var out []*dns.SRV
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].Priority == recs[i].Priority {
			j++
		}
		group := slices.Clone(recs[i:j])
		for len(group) > 0 {
			total := 0
			for _, r := range group {
				total += int(r.Weight)
			}
			k := 0
			if total > 0 {
				n := rand.IntN(total + 1)
				for sum := 0; k < len(group); k++ {
					sum += int(group[k].Weight)
					if sum >= n {
						break
					}
				}
				k = min(k, len(group)-1)
			}
			out = append(out, group[k])
			group = slices.Delete(group, k, k+1)
		}
		i = j
	}
	return out
}

// addrs resolves A and AAAA records of name.
func (r *Resolver) addrs(ctx context.Context, name string) ([]net.IP, error) {
	var ips []net.IP
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, name, t)
		if err != nil {
			return nil, err
		}
		for _, rr := range rrs {
			switch v := rr.(type) {
			case *dns.A:
				ips = append(ips, v.A)
			case *dns.AAAA:
				ips = append(ips, v.AAAA)
			}
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%w: %s has no address", ErrNoTarget, name)
	}
	return ips, nil
}

// query returns the answer records of one question; NXDOMAIN and an empty
// answer are no records, not errors.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	in, _, err := r.client.ExchangeContext(ctx, m, r.server)
	if err != nil {
		return nil, fmt.Errorf("proxy: DNS %s %s: %w", dns.TypeToString[qtype], name, err)
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return nil, fmt.Errorf("proxy: DNS %s %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[in.Rcode])
	}
	return in.Answer, nil
}
