package testnet_test

import "testing"

// TestFinalAnswers: the shed labels of the load scenarios map to the
// message indices sipp names in its errors.
func TestFinalAnswers(t *testing.T) {
	for scen, want := range map[string]map[string]string{
		"testdata/sipp/load_register.xml":      {"6": "503", "7": "500", "8": "408"},
		"testdata/sipp/load_register_auth.xml": {"11": "503", "12": "500", "13": "408"},
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
	errs := "x: Call-Id: 1-1@h, receive timeout on message register load:6 without label to jump to (ontimeout attribute): aborting call\n"
	if got := failureKinds([]byte(errs), "testdata/sipp/load_register.xml"); got != "map[answered 503:1]" {
		t.Errorf("failureKinds: %s", got)
	}
}
