package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"gossip_interval", "sip", "sip_tls", "identity_key", "max_conns_per_ip"}
	cmds := []string{"run", "testnet", "lookup", "publish", "remove", "config", "version", "ca", "id"}
	for _, tc := range []struct {
		word  string
		names []string
		want  string
	}{
		{"gosip_interval", keys, "gossip_interval"},
		{"Gossip-Interval", keys, "gossip_interval"},
		{"sipp", keys, "sip"},
		{"identity", keys, "identity_key"},
		{"zzz", keys, ""},
		{"lookpu", cmds, "lookup"},
		{"tesnet", cmds, "testnet"},
		{"rn", cmds, "run"},
		{"cfg", cmds, ""},
		{"x", cmds, ""},
	} {
		if got := Closest(tc.word, tc.names); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
	if Distance("kitten", "sitting") != 3 || Distance("", "abc") != 3 {
		t.Fatal("Distance")
	}
}
