package sipnet

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lsnode/lsnode/internal/promsnap"
)

// StatusCounts counts final responses by request method and status code
// (the registrar's, and the proxy's). Unknown methods count as "OTHER", so
// the set of keys stays small whatever arrives. The zero value is ready.
// Snapshot is what the dashboard shows and Collector what /metrics
// exports: the same counts.
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

// Add counts one response with code to a request of method. A code
// outside 100–699 counts as 0.
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

// StatusCount is one (method, code) count of a Snapshot.
type StatusCount struct {
	Method string `json:"method"`
	Code   int    `json:"code"`
	Count  int64  `json:"count"`
}

// Snapshot returns the counts so far, by method, then code.
func (s *StatusCounts) Snapshot() []StatusCount {
	var out []StatusCount
	s.Each(func(m string, c int, n int64) { out = append(out, StatusCount{Method: m, Code: c, Count: n}) })
	slices.SortFunc(out, func(a, b StatusCount) int {
		if a.Method != b.Method {
			return strings.Compare(a.Method, b.Method)
		}
		return a.Code - b.Code
	})
	return out
}

// Collector exports the counts as the counter name (fully qualified),
// labelled by method and code, read from one Snapshot per scrape.
func (s *StatusCounts) Collector(name, help string) prometheus.Collector {
	d := prometheus.NewDesc(name, help, []string{"method", "code"}, nil)
	return promsnap.Collector{Descs: []*prometheus.Desc{d}, Read: func(emit promsnap.Emit) {
		for _, sc := range s.Snapshot() {
			emit(d, prometheus.CounterValue, float64(sc.Count), sc.Method, strconv.Itoa(sc.Code))
		}
	}}
}
