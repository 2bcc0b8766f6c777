package testnet_test

import (
	"testing"
	"time"
)

// TestFinalAnswers: the shed labels of the load scenarios map to the
// message indices sipp names in its errors.
func TestFinalAnswers(t *testing.T) {
	for scen, want := range map[string]map[string]string{
		"testdata/sipp/load_register.xml":      {"6": "503", "7": "500", "8": "408"},
		"testdata/sipp/load_register_auth.xml": {"11": "503", "12": "500", "13": "408"},
		// Each answer's ACK, then the wait that ends the call.
		"testdata/sipp/uac.xml": {"12": "503", "13": "503", "14": "500", "15": "500", "16": "408", "17": "408"},
	} {
		got := finalAnswers(scen)
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", scen, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: index %s is %q, want %q", scen, k, got[k], v)
			}
		}
	}
	// Two events with no newline between them, as this sipp writes them,
	// then a late answer to a retransmission, which is no failure.
	errs := "The following events occurred:\n" +
		"2026-12-02\t14:54:27.071840\t1796223267.071840: Call-Id: 1-1@h, receive timeout on message register load:6 without label to jump to (ontimeout attribute): aborting call" +
		"2026-12-02\t14:54:27.072162\t1796223267.072162: Call-Id: 2-1@h, receive timeout on message register load:4 without label to jump to (ontimeout attribute): aborting call\n" +
		"2026-12-02\t14:54:28.000000\t1796223268.000000: Discarding message which can't be mapped to a known SIPp call:\nSIP/2.0 200 OK\n"
	want := "map[answered 503:1 timeout at register load:4:1]"
	if got := failureKinds([]byte(errs), "testdata/sipp/load_register.xml"); got != want {
		t.Errorf("failureKinds: %s, want %s", got, want)
	}
}

// TestRecoveryTime: a second's jitter that its neighbour makes up is not
// a failure to recover; a dip is; never reaching 90% is -1.
func TestRecoveryTime(t *testing.T) {
	for _, c := range []struct {
		perSec []int
		want   time.Duration
	}{
		{[]int{0, 3000, 2990, 2881, 3159, 2926, 2986, 3050, 2685, 3351, 2972, 0}, time.Second},
		{[]int{0, 0, 0, 84, 732, 2000, 2900, 3000, 3000, 3000, 3000}, 6 * time.Second},
		{[]int{0, 3000, 3000, 3000, 1000, 1000, 3000, 3000, 3000, 3000}, 6 * time.Second},
		{[]int{0, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000}, -1},
		{[]int{0, 3000, 3000, 3000, 3000, 3000, 3000, 3000, 3000, 2000}, -1},
	} {
		if got := recoveryTime(c.perSec, 3000); got != c.want {
			t.Errorf("%v: %v, want %v", c.perSec, got, c.want)
		}
	}
}
