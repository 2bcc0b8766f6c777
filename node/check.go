package node

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lsnode/lsnode/httpapi"
	"github.com/lsnode/lsnode/internal/yamlconf"
	"github.com/lsnode/lsnode/lsp"
	"github.com/lsnode/lsnode/overlay"
	"github.com/lsnode/lsnode/pki"
	"github.com/lsnode/lsnode/registrar"
)

// checker collects a config's problems, each at the line of its key when
// the config came from a file.
type checker struct {
	lines yamlconf.Lines
	errs  ConfigErrors
}

func (k *checker) add(path, format string, args ...any) {
	k.errs = append(k.errs, ConfigError{Path: path, Line: k.lines.At(path), Msg: fmt.Sprintf(format, args...)})
}

func (k *checker) err() error {
	if len(k.errs) == 0 {
		return nil
	}
	return k.errs
}

// Validate checks everything a config says without reading a file: the
// fields a node cannot start without, the roles' dependencies, addresses,
// multiaddrs and peer IDs, CIDRs, ranges and the values of every choice.
// Every problem is reported (ConfigErrors, which are ErrConfig), each
// with its line when the config came from a file.
func (c *Config) Validate() error {
	k := &checker{lines: c.lines}
	c.checkRoles(k)
	c.checkAddrs(k)
	c.checkOverlay(k)
	c.checkChoices(k)
	c.checkNetworks(k)
	return k.err()
}

// Check is Validate, then what a node reads before it starts: the domain
// credential (it parses, its key matches, it covers the domain), the trust
// anchors, the users and API token files, the federation's files and an
// existing identity key. 'lsnode run' and 'lsnode config check' both run
// it, so they refuse the same configs with the same words.
func (c *Config) Check() error {
	k := &checker{lines: c.lines}
	if err := c.Validate(); err != nil {
		k.errs = append(k.errs, err.(ConfigErrors)...)
	}
	if c.checkRegular(k) {
		c.checkFiles(k)
	}
	return k.err()
}

// checkRoles: the required fields and what each role needs besides.
func (c *Config) checkRoles(k *checker) {
	if c.Overlay.Name == "" {
		k.add("overlay.name", "empty: every node names the overlay it joins")
	}
	if c.Overlay.IdentityKey == "" {
		k.add("overlay.identity_key", "empty: the file of the node's identity key (created if missing)")
	}
	if len(c.TrustAnchors) == 0 {
		k.add("trust_anchors", "empty: the CA certificates the overlay trusts")
	}
	if c.Domain != "" && (c.CertFile == "" || c.KeyFile == "") {
		k.add("domain", "%q needs cert_file and key_file", c.Domain)
	}
	if c.Domain != "" && !pki.ValidDNSName(c.Domain) {
		k.add("domain", "%q is not a domain name", c.Domain)
	}
	o := c.Overlay
	if len(o.MemberCA) == 0 && (o.MemberCert != "" || o.PSKFile != "" || o.CRLFile != "") {
		k.add("overlay.member_ca", "overlay.member_cert, psk_file and crl_file make a federation overlay, which needs overlay.member_ca")
	}
	if c.API != "" && c.APITokensFile == "" {
		k.add("api", "needs api_tokens_file (bearer tokens, one per line)")
	}
	if c.SIPTLS != "" && c.SIP == "" {
		k.add("sip_tls", "needs sip")
	}
	if c.SIPWS != "" && c.SIP == "" {
		k.add("sip_ws", "needs sip")
	}
	if c.SIPWSS != "" && (c.SIP == "" || c.CertFile == "" && c.SIPWSSCert == "") {
		k.add("sip_wss", "needs sip and a certificate (sip_wss_cert, or the domain's cert_file)")
	}
	if (c.SIPWSSCert == "") != (c.SIPWSSKey == "") {
		k.add("sip_wss_cert", "sip_wss_cert and sip_wss_key go together")
	}
	for _, o := range c.SIPWSOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			k.add("sip_ws_origins", "%q is not an origin (https://host[:port])", o)
		}
	}
	if c.SIP != "" && c.Domain == "" {
		k.add("sip", "%q needs a domain to register for", c.SIP)
	}
	if c.TURN != "" && c.Domain == "" {
		k.add("turn", "%q needs a domain (its credential keys the TURN secret)", c.TURN)
	}
	if c.SIP != "" && c.Domain != "" && c.Registrar.UsersFile == "" && !c.Registrar.Open {
		k.add("registrar.users_file", "sip without registrar.users_file would register anyone as any user of %q: set registrar.users_file, or registrar.open: true to accept that", c.Domain)
	}
	if c.HTTP != "" && (c.TURN == "" || c.SIP == "" || c.Registrar.UsersFile == "") {
		k.add("http", "http (TURN credentials for SIP users) needs turn, sip and registrar.users_file")
	}
	if c.Overlay.TargetConns < 0 {
		k.add("overlay.target_conns", "must be positive (absent: the default)")
	}
	if c.Overlay.ConnGrace < 0 {
		k.add("overlay.conn_grace", "must be positive (absent: the default)")
	}
	if c.Registrar.MaxInFlight < 0 {
		k.add("registrar.max_in_flight", "must be positive (absent: the default)")
	}
	if c.Proxy.MaxInFlight < 0 {
		k.add("proxy.max_in_flight", "must be positive (absent: the default)")
	}
	if b := c.Proxy.ShedBacklog; b > 1 || b != b {
		k.add("proxy.shed_backlog", "%v: want a share of the receive buffer, at most 1 (negative: never)", b)
	}
	if r, w := c.LSP.Replicas, c.LSP.WriteQuorum; r < 0 || w < 0 || (r > 0 && w > r) {
		k.add("lsp.write_quorum", "%d with %d replicas: want 1 to replicas (absent: the default)", w, r)
	}
}

// checkAddrs: every host:port the node listens on or sends to.
func (c *Config) checkAddrs(k *checker) {
	for _, a := range []struct{ path, v string }{
		{"sip", c.SIP}, {"sip_tls", c.SIPTLS}, {"sip_ws", c.SIPWS}, {"sip_wss", c.SIPWSS}, {"turn", c.TURN}, {"http", c.HTTP},
		{"admin", c.Admin}, {"api", c.API}, {"relay.tls", c.Relay.TLS},
	} {
		if a.v != "" {
			if err := checkHostPort(a.v); err != nil {
				k.add(a.path, "%q: %v", a.v, err)
			}
		}
	}
	if d := c.Proxy.DNSServer; d != "" && d != "off" {
		if err := checkHostPort(d); err != nil {
			k.add("proxy.dns_server", "%q: %v (or \"off\")", d, err)
		}
	}
	for _, a := range []struct{ path, v string }{{"relay.relay_ip", c.Relay.RelayIP}, {"relay.media_ip", c.Relay.MediaIP}} {
		if _, err := netip.ParseAddr(a.v); a.v != "" && err != nil {
			k.add(a.path, "%q is not an IP address", a.v)
		}
	}
	if r := c.Relay.MediaPorts; r != "" {
		if _, _, err := ParsePortRange(r); err != nil {
			k.add("relay.media_ports", "%v", err)
		}
	}
	for dom, hops := range c.Proxy.StaticPeers {
		for i, h := range hops {
			if !strings.HasPrefix(h, "sip:") && !strings.HasPrefix(h, "sips:") {
				k.add(fmt.Sprintf("proxy.static_peers.%s[%d]", dom, i), "%q: want a sip: or sips: URI", h)
			}
		}
	}
}

// checkOverlay: listen multiaddrs, bootstrap multiaddrs with peer IDs.
func (c *Config) checkOverlay(k *checker) {
	for i, s := range c.Overlay.Listen {
		if err := overlay.CheckListenAddr(s); err != nil {
			k.add(fmt.Sprintf("overlay.listen[%d]", i), "%q: %v", s, err)
		}
	}
	for i, s := range c.Overlay.Bootstrap {
		if err := overlay.CheckBootstrapAddr(s); err != nil {
			k.add(fmt.Sprintf("overlay.bootstrap[%d]", i), "%q: %v (want /ip4/HOST/tcp/PORT/p2p/PEER-ID, the peer ID as 'lsnode id' prints it)", s, err)
		}
	}
	c.checkDomainOverlay(k)
	if b := c.Overlay.RegionBits; b < 0 || b > 6 || (b > 0 && c.Overlay.View != overlay.ViewPartial) {
		k.add("overlay.region_bits", "%d: want 1 to 6 with view: partial (0: automatic)", b)
	}
	if g, f := time.Duration(c.Overlay.GossipInterval), time.Duration(c.Overlay.FailAfter); g < 0 || f < 0 || (f > 0 && f < 2*max(g, time.Second)) {
		k.add("overlay.fail_after", "%v: want at least twice gossip_interval", f)
	}
}

// checkDomainOverlay: registrar.domain_overlay, for local and hybrid
// front-ends with the domain's credential.
func (c *Config) checkDomainOverlay(k *checker) {
	d := c.Registrar.DomainOverlay
	if len(d.Listen) == 0 {
		if len(d.Bootstrap) > 0 {
			k.add("registrar.domain_overlay.listen", "empty: the other front-ends reach this one there (bootstrap alone is not enough)")
		}
		return
	}
	if m := c.Registrar.Mode; m != string(registrar.Local) && m != string(registrar.Hybrid) {
		k.add("registrar.domain_overlay", "is for registrar.mode local or hybrid (a stateless front-end keeps its bindings in the overlay alone)")
	}
	if c.SIP == "" || c.Domain == "" {
		k.add("registrar.domain_overlay", "needs sip and a domain: its key is derived from the domain's")
	}
	if len(c.Domain) > 56 {
		k.add("registrar.domain_overlay", "the domain %q is longer than 56 characters: its overlay's name (domain.DOMAIN) would be too long", c.Domain)
	}
	for i, s := range d.Listen {
		if err := overlay.CheckListenAddr(s); err != nil {
			k.add(fmt.Sprintf("registrar.domain_overlay.listen[%d]", i), "%q: %v", s, err)
		}
	}
	for i, s := range d.Bootstrap {
		if err := overlay.CheckBootstrapAddr(s); err != nil {
			k.add(fmt.Sprintf("registrar.domain_overlay.bootstrap[%d]", i), "%q: %v (want /ip4/HOST/tcp/PORT/p2p/PEER-ID, the front-end's 'lsnode id')", s, err)
		}
	}
}

// checkChoices: every key that takes one of a few values.
func (c *Config) checkChoices(k *checker) {
	one := func(path, v string, want ...string) {
		if v != "" && !slices.Contains(want, v) {
			k.add(path, "%q: want %s", v, strings.Join(want, ", "))
		}
	}
	one("log_level", c.LogLevel, "debug", "info", "warn", "error")
	one("log_format", c.LogFormat, "text", "json")
	one("registrar.mode", c.Registrar.Mode, string(registrar.Stateless), string(registrar.Local), string(registrar.Hybrid))
	one("proxy.mode", c.Proxy.Mode, "proxy", "redirect", "off")
	one("proxy.media", c.Proxy.Media, "off", "always", "auto")
	one("overlay.view", c.Overlay.View, overlay.ViewFull, overlay.ViewPartial)
	one("overlay.records", c.Overlay.Records, "private", "clear")
	one("overlay.reachability", c.Overlay.Reachability, overlay.ReachPublic, overlay.ReachPrivate, overlay.ReachAuto)
	for i, a := range c.Registrar.DigestAlgorithms {
		one(fmt.Sprintf("registrar.digest_algorithms[%d]", i), a, "SHA-256", "MD5")
	}
	if c.Overlay.Client && c.Overlay.Reachability == overlay.ReachPublic {
		k.add("overlay.reachability", "a client is not reachable: private or auto")
	}
	if lo, hi := time.Duration(c.Registrar.MinExpires), time.Duration(c.Registrar.MaxExpires); lo < 0 || hi < 0 || (hi > 0 && lo > hi) {
		k.add("registrar.min_expires", "%v above max_expires %v", lo, hi)
	}
	for i, d := range c.Proxy.TransitPeers {
		if !pki.ValidDNSName(d) {
			k.add(fmt.Sprintf("proxy.transit_peers[%d]", i), "%q is not a domain name", d)
		}
	}
}

// checkNetworks: the CIDR lists.
func (c *Config) checkNetworks(k *checker) {
	for _, l := range []struct {
		path string
		v    []string
	}{{"proxy.trusted_networks", c.Proxy.TrustedNetworks}, {"relay.allow", c.Relay.Allow}} {
		for i, s := range l.v {
			if _, err := netip.ParsePrefix(s); err != nil {
				k.add(fmt.Sprintf("%s[%d]", l.path, i), "%q is not a CIDR (10.0.0.0/8, 2001:db8::/32)", s)
			}
		}
	}
}

// checkFiles reads what the node reads at start, reporting each file that
// is missing, unreadable or wrong.
func (c *Config) checkFiles(k *checker) {
	for i, a := range c.TrustAnchors {
		if _, err := lsp.LoadTrustAnchors(c.Path(a)); err != nil {
			k.add(fmt.Sprintf("trust_anchors[%d]", i), "%s", c.fileErr(a, err))
		}
	}
	if c.Domain != "" && c.CertFile != "" && c.KeyFile != "" {
		if _, err := c.LoadCredential(); err != nil {
			k.add("cert_file", "%s", c.fileErr(c.CertFile, err))
		}
	}
	if f := c.Registrar.UsersFile; f != "" {
		if users, err := registrar.LoadUsers(c.Path(f)); err != nil {
			k.add("registrar.users_file", "%s", c.fileErr(f, err))
		} else if users.Realm != "" && c.Domain != "" && users.Realm != c.Domain {
			k.add("registrar.users_file", "%s: realm %q, but the domain is %q", f, users.Realm, c.Domain)
		}
	}
	if f := c.APITokensFile; f != "" && c.API != "" {
		if _, err := httpapi.LoadTokens(c.Path(f)); err != nil {
			k.add("api_tokens_file", "%s", c.fileErr(f, err))
		}
	}
	if len(c.Overlay.MemberCA) > 0 {
		if _, err := c.LoadFederation(); err != nil {
			k.add("overlay.member_ca", "%s", c.fileErr("", err))
		}
	}
	if f := c.Overlay.IdentityKey; f != "" {
		switch _, err := os.Stat(c.Path(f)); {
		case errors.Is(err, fs.ErrNotExist): // created at start
		case err != nil:
			k.add("overlay.identity_key", "%s", c.fileErr(f, err))
		default:
			if _, err := overlay.LoadIdentity(c.Path(f)); err != nil {
				k.add("overlay.identity_key", "%s", c.fileErr(f, err))
			}
		}
	}
}

// maxConfigFile bounds what a file a config names may hold (keys,
// certificates, CRLs, users, tokens): larger is a mistake, or a device.
const maxConfigFile = 64 << 20

// checkRegular reports, for each file the config names that exists, one
// that is not a regular file of at most maxConfigFile bytes (a FIFO would
// block the reader, /dev/zero never end). It returns whether all are.
func (c *Config) checkRegular(k *checker) bool {
	ok := true
	check := func(path, f string) {
		if f == "" {
			return
		}
		st, err := os.Stat(c.Path(f))
		switch {
		case err != nil:
			return // the loader reports it
		case !st.Mode().IsRegular():
			k.add(path, "%s is not a regular file (%v)", f, st.Mode().Type())
			ok = false
		case st.Size() > maxConfigFile:
			k.add(path, "%s holds %d bytes, more than a config's file may (%d)", f, st.Size(), maxConfigFile)
			ok = false
		}
	}
	for i, a := range c.TrustAnchors {
		check(fmt.Sprintf("trust_anchors[%d]", i), a)
	}
	for i, a := range c.Overlay.MemberCA {
		check(fmt.Sprintf("overlay.member_ca[%d]", i), a)
	}
	for _, f := range [][2]string{{"cert_file", c.CertFile}, {"key_file", c.KeyFile}, {"registrar.users_file", c.Registrar.UsersFile},
		{"api_tokens_file", c.APITokensFile}, {"overlay.identity_key", c.Overlay.IdentityKey}, {"overlay.member_cert", c.Overlay.MemberCert},
		{"overlay.psk_file", c.Overlay.PSKFile}, {"overlay.crl_file", c.Overlay.CRLFile}} {
		check(f[0], f[1])
	}
	return ok
}

// fileErr says what is wrong with the file the config calls name: the
// path as the config writes it, then the cause, without the loaders'
// prefixes.
func (c *Config) fileErr(name string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", cmp.Or(name, pe.Path), pe.Err)
	}
	msg := err.Error()
	if name != "" {
		msg = strings.ReplaceAll(msg, c.Path(name), name)
	}
	for _, p := range []string{"lsp: credential ", "lsp: trust anchors: ", registrar.ErrUsers.Error() + ": ", ErrConfig.Error() + ": ", overlay.ErrConfig.Error() + ": "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// ParsePortRange reads "LOW-HIGH" (40000-40999), both ports 1 to 65535,
// LOW at most HIGH.
func ParsePortRange(r string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(r, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	switch {
	case !ok || err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("%q: want LOW-HIGH (40000-40999)", r)
	case lo < 1 || hi > 65535 || lo > hi:
		return 0, 0, fmt.Errorf("%q: want 1 <= LOW <= HIGH <= 65535", r)
	}
	return lo, hi, nil
}

// checkHostPort: HOST:PORT with a port from 0 to 65535 (0: any free one)
// and a host that is empty (every address), an IP or a name.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want HOST:PORT (127.0.0.1:5060, [::1]:5060)")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q: want 0 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); host != "" && err != nil && !pki.ValidDNSName(host) {
		return fmt.Errorf("host %q: want an IP address or a name", host)
	}
	return nil
}

// unwrapConfig drops a leading "config: " (ErrConfig's text) that the
// checker's own lines already imply.
func unwrapConfig(err error) string {
	return strings.TrimPrefix(err.Error(), ErrConfig.Error()+": ")
}
