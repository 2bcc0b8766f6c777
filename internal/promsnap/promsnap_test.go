package promsnap

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	d := Desc("test", "things", "Things now.", "kind")
	n := 0
	c := Collector{Descs: []*prometheus.Desc{d}, Read: func(emit Emit) {
		n++
		emit(d, prometheus.GaugeValue, 3, "a")
		emit(d, prometheus.GaugeValue, 4, "b")
	}}
	want := `# HELP lsnode_test_things Things now.
# TYPE lsnode_test_things gauge
lsnode_test_things{kind="a"} 3
lsnode_test_things{kind="b"} 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("one scrape read the snapshot %d times, want 1", n)
	}
}
