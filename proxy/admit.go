package proxy

import (
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// inflight bounds the requests being routed at once: MaxInFlight in all,
// and a share of it per source address and per target (the Request-URI's
// user@host), so one sender, or the dead Contacts of one user, cannot take
// every slot and turn a flood of requests nobody answers (each held 32 s)
// into a 503 for every caller. Trusted senders (edge proxies, peers in
// trusted_networks) count but are never refused.
type inflight struct {
	max, share int

	mu       sync.Mutex
	all      int
	bySource map[string]int
	byTarget map[string]int
}

func newInflight(n int) *inflight {
	return &inflight{max: n, share: max(16, n/64), bySource: map[string]int{}, byTarget: map[string]int{}}
}

// acquire takes a slot for req, or reports false when req is to be shed.
// A taken slot is given back with release(source, target).
func (f *inflight) acquire(req *sip.Request, trusted bool) (source, target string, ok bool) {
	source = req.Source()
	if h, _, err := net.SplitHostPort(source); err == nil {
		source = h
	}
	target = strings.ToLower(req.Recipient.User + "@" + req.Recipient.Host)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !trusted && (f.all >= f.max || f.bySource[source] >= f.share || f.byTarget[target] >= f.share) {
		return "", "", false
	}
	f.all++
	f.bySource[source]++
	f.byTarget[target]++
	return source, target, true
}

func (f *inflight) release(source, target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.all--
	if f.bySource[source]--; f.bySource[source] <= 0 {
		delete(f.bySource, source)
	}
	if f.byTarget[target]--; f.byTarget[target] <= 0 {
		delete(f.byTarget, target)
	}
}

// now is how many requests hold a slot.
func (f *inflight) now() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.all
}

// retryAfter is a Retry-After header of at least a second.
func retryAfter(secs float64) sip.Header {
	return sip.NewHeader("Retry-After", strconv.Itoa(max(1, int(secs+0.999))))
}
