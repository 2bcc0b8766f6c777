package sipnet

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStatusCounts: counts per method and code, concurrent adds lose
// nothing, and odd methods and codes fold into a few keys.
func TestStatusCounts(t *testing.T) {
	var s StatusCounts
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				s.Add("register", 200)
			}
		})
	}
	wg.Wait()
	s.Add("INVITE", 486)
	s.Add("FOO", 200)
	s.Add("BAR", 200)
	s.Add("OPTIONS", 42)
	got := map[[2]any]int64{}
	s.Each(func(m string, code int, n int64) { got[[2]any{m, code}] = n })
	want := map[[2]any]int64{{"REGISTER", 200}: 800, {"INVITE", 486}: 1, {"OTHER", 200}: 2, {"OPTIONS", 0}: 1}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%v: %d, want %d", k, got[k], n)
		}
	}
}

// TestStatusCountsCollector: the collector exports the Snapshot's counts
// by method and code, and passes promlint.
func TestStatusCountsCollector(t *testing.T) {
	var s StatusCounts
	s.Add("REGISTER", 401)
	s.Add("REGISTER", 200)
	s.Add("REGISTER", 200)
	s.Add("INVITE", 486)
	want := []StatusCount{{"INVITE", 486, 1}, {"REGISTER", 200, 2}, {"REGISTER", 401, 1}}
	if got := s.Snapshot(); !slices.Equal(got, want) {
		t.Fatalf("snapshot %v, want %v", got, want)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(s.Collector("lsnode_test_requests_total", "Requests, by method and final status.")); err != nil {
		t.Fatal(err)
	}
	page := `
# HELP lsnode_test_requests_total Requests, by method and final status.
# TYPE lsnode_test_requests_total counter
lsnode_test_requests_total{code="486",method="INVITE"} 1
lsnode_test_requests_total{code="200",method="REGISTER"} 2
lsnode_test_requests_total{code="401",method="REGISTER"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(page)); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %+v", err, problems)
	}
}
