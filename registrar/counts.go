package registrar

import (
	"strings"
	"sync"
	"sync/atomic"
)

// StatusCounts counts final responses by request method and status code
// (the registrar's, and the proxy's). Unknown methods count as "OTHER", so
// the set of keys stays small whatever arrives.
type StatusCounts struct {
	m sync.Map // statusKey → *atomic.Int64
}

type statusKey struct {
	method string
	code   int
}

var knownMethods = map[string]bool{"REGISTER": true, "INVITE": true, "ACK": true, "BYE": true, "CANCEL": true,
	"OPTIONS": true, "INFO": true, "UPDATE": true, "MESSAGE": true, "SUBSCRIBE": true, "NOTIFY": true,
	"REFER": true, "PRACK": true, "PUBLISH": true}

// Add counts one response with code to a request of method.
func (s *StatusCounts) Add(method string, code int) {
	method = strings.ToUpper(method)
	if !knownMethods[method] {
		method = "OTHER"
	}
	if code < 100 || code > 699 {
		code = 0
	}
	k := statusKey{method, code}
	v, ok := s.m.Load(k)
	if !ok {
		v, _ = s.m.LoadOrStore(k, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// Each calls f for every (method, code) counted so far.
func (s *StatusCounts) Each(f func(method string, code int, n int64)) {
	s.m.Range(func(k, v any) bool {
		sk := k.(statusKey)
		f(sk.method, sk.code, v.(*atomic.Int64).Load())
		return true
	})
}
