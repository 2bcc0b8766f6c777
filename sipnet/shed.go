package sipnet

import (
	"bytes"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Shedding on a UDP reader. Under overload a REGISTER that is refused
// still cost what one that is served costs before its handler: a
// goroutine, sipgo's parse of every header, a response built as a message
// and printed. The register bench measured the refusals at about a third
// of the cost of a served REGISTER, so at twice the sustainable rate the
// refusals took most of the CPU and goodput fell to 29–52% of the maximum.
// With a shed hook (ShedStateless) that says the handler is full, the
// reader answers 503 itself, from the request's bytes: it copies the
// lines a response must echo (RFC 3261 §8.2.6.2: Via, From, To, Call-ID,
// CSeq), adds a To tag and Retry-After, and sends it to where the
// response would go; nothing is parsed into a message and no goroutine
// starts. A request it cannot answer so (folded lines, a header missing
// or repeated, a Via it does not read, a 503 that would be longer than
// the request) is dropped while the hook says busy: on the usual path it
// would wait in front of the handler after all. The top Via gets the
// received and rport values a response carries (topVia).

// maxRawHeaders bounds the header lines rawReject looks at.
const maxRawHeaders = 64

// shedHook is one method's ShedStateless.
type shedHook struct {
	busy   func(ShedInfo) time.Duration
	counts *StatusCounts
}

// ShedInfo is what a shed hook is told of a request arriving over UDP.
type ShedInfo struct {
	// InHand: how many requests taken statelessly the stack holds (parsed
	// or waiting to be, answered or waiting on their handler): under
	// overload most of them wait for the CPU before their handler sees
	// them.
	InHand int
	// Request is the datagram's bytes, for the hook's duration only.
	Request []byte

	stack *Stack
}

// Backlog is the share of the UDP socket's receive buffer the kernel
// counts as taken (0 where the system does not tell), read at most once
// a millisecond: how far the readers are behind. It is the kernel's
// accounting, not the bytes of the datagrams: each datagram's overhead
// counts (about 800 bytes on Linux), and Linux gives back memory of
// datagrams already read lazily, up to a quarter of the buffer, so the
// share may read high by that much (and slightly over 1). Near 1 the
// kernel drops what arrives, responses and ACKs of the calls in progress
// as much as new requests.
func (in ShedInfo) Backlog() float64 {
	if in.stack == nil {
		return 0
	}
	return in.stack.backlog()
}

// HasAuthorization reports whether the request carries an Authorization
// header (it answers a UAS's challenge, or claims to; nothing is
// checked). It reads the header section, so a hook asks only when the
// answer matters.
func (in ShedInfo) HasAuthorization() bool { return hasAuthorization(in.Request) }

// ShedStateless gives method's stateless handler over UDP a shed hook:
// while busy returns d > 0, a new request of method is answered 503 with
// Retry-After d (whole seconds, at least 1) on a UDP reader, before
// anything else is done with it (see above), and counted in counts if it
// is set. A request busy lets in reaches the handler as admitted
// (StatelessHandler). Before Serve, like HandleStateless.
func (s *Stack) ShedStateless(method sip.RequestMethod, busy func(ShedInfo) time.Duration, counts *StatusCounts) {
	s.mustNotServe()
	s.stateless.shed[string(method)] = shedHook{busy: busy, counts: counts}
}

// shedRaw answers data from `from` with a 503 built from its bytes if the
// method's shed hook says so, and reports whether the request is done
// with: answered so, or, while busy, dropped when it is not in the form
// rawReject reads (the usual path would let it queue in front of the
// handler after all; a real UA sends it again).
func (s *Stack) shedRaw(method string, key uint64, data []byte, from *net.UDPAddr) bool {
	st := s.stateless
	hook, ok := st.shed[method]
	if !ok {
		return false
	}
	d := hook.busy(ShedInfo{InHand: len(st.slots), Request: data, stack: s})
	if d <= 0 {
		return false
	}
	s.refuse(hook, method, data, from, d)
	return true
}

// refuse answers the request in data with a 503 with Retry-After d built
// from its bytes (rawReject), counted in st and hook.counts; it drops the
// request instead when it is not in the form rawReject reads, when the
// 503 would be longer than the request (never more bytes out than in).
func (s *Stack) refuse(hook shedHook, method string, data []byte, from *net.UDPAddr, d time.Duration) {
	st := s.stateless
	buf := st.buffer()
	defer st.bufs.Put(buf)
	mint := st.mintTag // a tag an ACK is checked against (shedAck)
	if method != string(sip.INVITE) {
		mint = st.quickTag // no ACK follows: any tag will do, and an HMAC per refusal costs under load
	}
	out, port, _, ok := rawReject((*buf)[:0], data, from, "503 Service Unavailable", max(int(d/time.Second), 1), mint)
	if !ok || len(out) > len(data) {
		st.dropped.Add(1)
		return
	}
	*buf = out
	st.shedded.Add(1)
	if hook.counts != nil {
		hook.counts.Add(method, 503)
	}
	_, _ = s.udp.WriteTo(out, &net.UDPAddr{IP: from.IP, Port: port, Zone: from.Zone})
}

// rawReject appends to dst a final response ("SIP/2.0 " + status) to the
// request in req with Retry-After retry, and returns it with the port it
// goes to at the source's IP: the source port with rport in the top Via
// (RFC 3581), else the Via's sent-by port (RFC 3261 §18.2.2, 5060 by
// default). ok is false when req is not a request in the plain form this
// reads (see Shedding above: also a control character in a line it would
// echo, a CSeq not "number method-of-the-request-line", a quoted string in
// the top Via or after the To's name-addr); dst is then of no use. A To
// without a tag gets one, mint's (appended to dst from the Call-ID's
// value); tagged reports the request's own (in a dialog). Each
// line is scanned a bounded number of times and nothing is allocated
// beyond dst.
func rawReject(dst, req []byte, src *net.UDPAddr, status string, retry int, mint func(dst, callID []byte) []byte) (out []byte, port int, tagged, ok bool) {
	end := bytes.Index(req, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, 0, false, false
	}
	first, rest, _ := bytes.Cut(req[:end+2], []byte("\r\n"))
	method, uri, _ := bytes.Cut(first, []byte(" "))
	if len(method) == 0 || !bytes.HasSuffix(uri, []byte(" SIP/2.0")) || bytes.Count(first, []byte(" ")) != 2 || !plain(first) {
		return nil, 0, false, false
	}
	var vias [8][]byte
	nvia := 0
	var from, to, callID, cseq []byte
	once := func(p *[]byte, line []byte) bool {
		if *p != nil {
			return false
		}
		*p = line
		return true
	}
	for n := 0; len(rest) > 0; n++ {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, _, found := bytes.Cut(line, []byte(":"))
		if n == maxRawHeaders || !found || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return nil, 0, false, false // folded, or not a header
		}
		name = bytes.TrimRight(name, " \t")
		good := true
		switch {
		case headerIs(name, "via", "v"):
			if nvia == len(vias) || !viaValues(line) {
				return nil, 0, false, false
			}
			vias[nvia] = line
			nvia++
		case headerIs(name, "from", "f"):
			good = once(&from, line)
		case headerIs(name, "to", "t"):
			good = once(&to, line)
		case headerIs(name, "call-id", "i"):
			good = once(&callID, line)
		case headerIs(name, "cseq", ""):
			good = once(&cseq, line)
		}
		if !good || !plain(line) {
			return nil, 0, false, false
		}
	}
	if nvia == 0 || from == nil || to == nil || callID == nil || !cseqOf(cseq, method) {
		return nil, 0, false, false
	}
	port, host, rport, ok := viaPort(vias[0], src.Port)
	if !ok {
		return nil, 0, false, false
	}
	_, tagged, ok = toTag(to)
	if !ok {
		return nil, 0, false, false
	}
	out = append(dst, "SIP/2.0 "...)
	out = append(out, status...)
	out = append(out, "\r\n"...)
	out = topVia(out, vias[0], host, rport, src)
	for _, v := range vias[1:nvia] {
		out = append(append(out, v...), "\r\n"...)
	}
	out = append(append(out, from...), "\r\n"...)
	out = append(out, to...)
	if !tagged {
		_, id, _ := bytes.Cut(callID, []byte(":"))
		out = mint(append(out, ";tag="...), bytes.TrimSpace(id))
	}
	out = append(out, "\r\n"...)
	out = append(append(out, callID...), "\r\n"...)
	out = append(append(out, cseq...), "\r\n"...)
	out = append(out, "Retry-After: "...)
	out = strconv.AppendInt(out, int64(retry), 10)
	out = append(out, "\r\nContent-Length: 0\r\n\r\n"...)
	return out, port, tagged, true
}

// hasAuthorization reports whether the header section of the request in
// req has an Authorization line (folded lines and lines without a colon
// are skipped; nothing else is checked). Lines end in CRLF or, as sipgo
// also reads them, LF alone.
func hasAuthorization(req []byte) bool {
	_, rest, _ := bytes.Cut(req, []byte("\n")) // the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return false // the end of the header section
		}
		name, _, found := bytes.Cut(line, []byte(":"))
		if !found || len(name) < len("authorization") || name[0] == ' ' || name[0] == '\t' {
			continue
		}
		name = bytes.TrimRight(name, " \t")
		if headerIs(name, "authorization", "") {
			return true
		}
	}
	return false
}

// headerIs reports whether name is long or, when short is not empty, the
// compact form short, in any ASCII case.
func headerIs(name []byte, long, short string) bool {
	return HeaderNameIs(name, long) || short != "" && HeaderNameIs(name, short)
}

// plain reports whether line holds no control character but HT (CR and
// LF included: a line is never echoed with one).
func plain(line []byte) bool {
	for _, c := range line {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// cseqOf reports whether a CSeq header line is "CSeq: <number> <method>".
func cseqOf(line, method []byte) bool {
	_, v, _ := bytes.Cut(line, []byte(":"))
	num, m, ok := bytes.Cut(bytes.TrimSpace(v), []byte(" "))
	if !ok || len(num) == 0 || len(num) > 10 || !bytes.Equal(bytes.TrimLeft(m, " \t"), method) {
		return false
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// maxRawParams bounds the parameters read in a Via or To line.
const maxRawParams = 32

// toTag reads a To header line's tag parameter: after the name-addr's
// '>' if it has one, else anywhere in the value (an addr-spec's
// parameters are the header's). ok is false for parameters it does not
// read (quoted, or too many).
func toTag(line []byte) (tag []byte, tagged, ok bool) {
	_, v, _ := bytes.Cut(line, []byte(":"))
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i:]
	}
	if bytes.IndexByte(v, '"') >= 0 {
		return nil, false, false
	}
	_, v, _ = bytes.Cut(v, []byte(";"))
	for n := 0; len(v) > 0; n++ {
		if n == maxRawParams {
			return nil, false, false
		}
		var p []byte
		p, v, _ = bytes.Cut(v, []byte(";"))
		k, val, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("tag")) && !tagged {
			tag, tagged = bytes.TrimSpace(val), true
		}
	}
	return tag, tagged, true
}

// viaValues reports whether every value of a Via header line starts
// "SIP/2.0/<transport> " and none is quoted: the lines rawReject echoes
// are ones the 503's reader reads as Vias (the fuzzer found a request
// sipgo read whose 503, echoing a Via value "0000000", it did not).
func viaValues(line []byte) bool {
	_, v, _ := bytes.Cut(line, []byte(":"))
	if bytes.IndexByte(v, '"') >= 0 {
		return false
	}
	for n := 0; len(v) > 0; n++ {
		if n == maxRawParams {
			return false
		}
		var one []byte
		one, v, _ = bytes.Cut(v, []byte(","))
		proto, rest, found := bytes.Cut(bytes.TrimLeft(one, " \t"), []byte(" "))
		if !found || len(proto) < 9 || !bytes.EqualFold(proto[:8], []byte("SIP/2.0/")) || len(bytes.TrimSpace(rest)) == 0 {
			return false
		}
	}
	return true
}

// viaPort is where a response goes by the first value of a Via header
// line: srcPort with an rport parameter, else the sent-by port, else
// 5060; with the sent-by host and whether rport was there. It reads
// "SIP/2.0/<transport> host[:port]" and unquoted parameters (an IPv6
// host in brackets); ok is false for anything else.
func viaPort(line []byte, srcPort int) (port int, host []byte, rport, ok bool) {
	_, v, _ := bytes.Cut(line, []byte(":"))
	if bytes.IndexByte(v, '"') >= 0 {
		return 0, nil, false, false
	}
	v, _, _ = bytes.Cut(v, []byte(",")) // the first value
	proto, rest, found := bytes.Cut(bytes.TrimLeft(v, " \t"), []byte(" "))
	if !found || len(proto) < 9 || !bytes.EqualFold(proto[:8], []byte("SIP/2.0/")) {
		return 0, nil, false, false
	}
	sentBy, params, _ := bytes.Cut(bytes.TrimSpace(rest), []byte(";"))
	sentBy = bytes.TrimSpace(sentBy)
	for n := 0; len(params) > 0; n++ {
		if n == maxRawParams {
			return 0, nil, false, false
		}
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		k, _, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("rport")) {
			rport = true
		}
	}
	var portText []byte
	host = sentBy
	if len(sentBy) > 0 && sentBy[0] == '[' {
		end := bytes.IndexByte(sentBy, ']')
		if end < 0 {
			return 0, nil, false, false
		}
		host = sentBy[:end+1]
		if rest := sentBy[end+1:]; len(rest) > 0 {
			if rest[0] != ':' {
				return 0, nil, false, false
			}
			portText = rest[1:]
		}
	} else if i := bytes.IndexByte(sentBy, ':'); i >= 0 {
		host, portText = sentBy[:i], sentBy[i+1:]
		if portText == nil {
			portText = []byte{}
		}
	}
	if len(host) == 0 || host[0] != '[' && bytes.ContainsAny(host, " \t:") {
		return 0, nil, false, false
	}
	switch {
	case rport:
		port = srcPort
	case portText == nil:
		port = 5060
	default:
		for _, c := range portText {
			if c < '0' || c > '9' || port > 65535 {
				return 0, nil, false, false
			}
			port = port*10 + int(c-'0')
		}
	}
	if port < 1 || port > 65535 {
		return 0, nil, false, false
	}
	return port, host, rport, true
}

// topVia appends the top Via line as a response carries it (RFC 3261
// §18.2.1, RFC 3581 §4): its first value with received set to the source
// IP when the sent-by host is another or rport was asked for, and rport
// given the source port; the line's other values as they came. line has
// passed viaPort (unquoted, at most maxRawParams parameters).
func topVia(out, line, host []byte, rport bool, src *net.UDPAddr) []byte {
	first, more := line, []byte(nil)
	if i := bytes.IndexByte(line, ','); i >= 0 {
		first, more = line[:i], line[i:]
	}
	head, params, _ := bytes.Cut(first, []byte(";"))
	out = append(out, bytes.TrimRight(head, " \t")...)
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte(";"))
		k, _, _ := bytes.Cut(p, []byte("="))
		if k = bytes.TrimSpace(k); bytes.EqualFold(k, []byte("rport")) || bytes.EqualFold(k, []byte("received")) {
			continue
		}
		out = append(append(out, ';'), p...)
	}
	ip := src.IP.String()
	if rport || !bytes.Equal(bytes.Trim(host, "[]"), []byte(ip)) {
		out = append(append(out, ";received="...), ip...)
	}
	if rport {
		out = strconv.AppendInt(append(out, ";rport="...), int64(src.Port), 10)
	}
	return append(append(out, more...), "\r\n"...)
}
