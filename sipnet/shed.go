package sipnet

import (
	"bytes"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Shedding on the UDP reader. Under overload a REGISTER that is refused
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
// or repeated, a Via it does not read) takes the usual path, where the
// handler refuses it the usual way.

// maxRawHeaders bounds the header lines rawReject looks at.
const maxRawHeaders = 64

// shedHook is one method's ShedStateless.
type shedHook struct {
	busy   func(inHand int) time.Duration
	counts *StatusCounts
}

// ShedStateless gives method's stateless handler over UDP a shed hook:
// while busy returns d > 0, a new request of method is answered 503 with
// Retry-After d (whole seconds, at least 1) on the UDP reader, before
// anything else is done with it (see above), and counted in counts if it
// is set. busy is told how many requests taken statelessly are in hand
// (parsed or waiting to be, answered or waiting on their handler): under
// overload most of them wait for the CPU before their handler sees them.
// Before Serve, like HandleStateless.
func (s *Stack) ShedStateless(method sip.RequestMethod, busy func(inHand int) time.Duration, counts *StatusCounts) {
	s.mustNotServe()
	s.stateless.shed[string(method)] = shedHook{busy: busy, counts: counts}
}

// shedRaw answers data from `from` with a 503 built from its bytes if the
// method's shed hook says so, and reports whether it did (then the
// request is done with).
func (s *Stack) shedRaw(method string, key uint64, data []byte, from *net.UDPAddr) bool {
	st := s.stateless
	hook, ok := st.shed[method]
	if !ok {
		return false
	}
	d := hook.busy(len(st.slots))
	if d <= 0 {
		return false
	}
	var tag [16]byte
	hex := strconv.AppendUint(tag[:0], key, 16)
	out, port, ok := rawReject(st.shedBuf[:0], data, from.Port, "503 Service Unavailable", max(int(d/time.Second), 1), hex)
	if !ok {
		return false
	}
	st.shedBuf = out
	st.shedded.Add(1)
	if hook.counts != nil {
		hook.counts.Add(method, 503)
	}
	_, _ = s.udp.WriteTo(out, &net.UDPAddr{IP: from.IP, Port: port, Zone: from.Zone})
	return true
}

// rawReject appends to dst a final response ("SIP/2.0 " + status) to the
// request in req with Retry-After retry, and returns it with the port it
// goes to at the source's IP: the source port with rport in the top Via
// (RFC 3581), else the Via's sent-by port (RFC 3261 §18.2.2, 5060 by
// default). ok is false when req is not a request in the plain form this
// reads (see Shedding above); dst is then of no use.
func rawReject(dst, req []byte, srcPort int, status string, retry int, tag []byte) (out []byte, port int, ok bool) {
	end := bytes.Index(req, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, 0, false
	}
	lines := req[:end+2]
	first, rest, _ := bytes.Cut(lines, []byte("\r\n"))
	if !bytes.HasSuffix(first, []byte(" SIP/2.0")) || bytes.Count(first, []byte(" ")) != 2 {
		return nil, 0, false
	}
	var via [][]byte
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
		if n == maxRawHeaders || !found || len(line) == 0 || line[0] == ' ' || line[0] == '\t' || bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
			return nil, 0, false // folded, bare LF or CR, or not a header
		}
		good := true
		switch string(bytes.ToLower(bytes.TrimRight(name, " \t"))) {
		case "via", "v":
			via = append(via, line)
		case "from", "f":
			good = once(&from, line)
		case "to", "t":
			good = once(&to, line)
		case "call-id", "i":
			good = once(&callID, line)
		case "cseq":
			good = once(&cseq, line)
		}
		if !good {
			return nil, 0, false
		}
	}
	if len(via) == 0 || from == nil || to == nil || callID == nil || cseq == nil {
		return nil, 0, false
	}
	if port, ok = viaPort(via[0], srcPort); !ok {
		return nil, 0, false
	}
	out = append(dst, "SIP/2.0 "...)
	out = append(out, status...)
	out = append(out, "\r\n"...)
	for _, v := range via {
		out = append(append(out, v...), "\r\n"...)
	}
	out = append(append(out, from...), "\r\n"...)
	out = append(out, to...)
	if !hasTag(to) {
		out = append(append(out, ";tag="...), tag...)
	}
	out = append(out, "\r\n"...)
	out = append(append(out, callID...), "\r\n"...)
	out = append(append(out, cseq...), "\r\n"...)
	out = append(out, "Retry-After: "...)
	out = strconv.AppendInt(out, int64(retry), 10)
	out = append(out, "\r\nContent-Length: 0\r\n\r\n"...)
	return out, port, true
}

// hasTag reports whether a To header line carries a tag parameter: after
// the name-addr's '>' if it has one, else anywhere in the value (an
// addr-spec's parameters are the header's).
func hasTag(line []byte) bool {
	_, v, _ := bytes.Cut(line, []byte(":"))
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i:]
	}
	for _, p := range bytes.Split(v, []byte(";"))[1:] {
		k, _, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("tag")) {
			return true
		}
	}
	return false
}

// viaPort is where a response goes by the first value of a Via header
// line: srcPort with an rport parameter, else the sent-by port, else
// 5060. It reads "SIP/2.0/<transport> host[:port]" and parameters; ok is
// false for anything else.
func viaPort(line []byte, srcPort int) (int, bool) {
	_, v, _ := bytes.Cut(line, []byte(":"))
	v, _, _ = bytes.Cut(v, []byte(",")) // the first value
	proto, rest, ok := bytes.Cut(bytes.TrimLeft(v, " \t"), []byte(" "))
	if !ok || !bytes.HasPrefix(bytes.ToUpper(proto), []byte("SIP/2.0/")) {
		return 0, false
	}
	params := bytes.Split(bytes.TrimSpace(rest), []byte(";"))
	sentBy := bytes.TrimSpace(params[0])
	for _, p := range params[1:] {
		k, _, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("rport")) {
			return srcPort, true
		}
	}
	host, port := sentBy, []byte(nil)
	if i := bytes.LastIndexByte(sentBy, ':'); i >= 0 && (sentBy[0] != '[' || bytes.IndexByte(sentBy, ']') < i) {
		host, port = sentBy[:i], sentBy[i+1:]
	}
	if len(host) == 0 || bytes.ContainsAny(host, " \t") {
		return 0, false
	}
	if port == nil {
		return 5060, true
	}
	n, err := strconv.Atoi(string(port))
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return n, true
}
