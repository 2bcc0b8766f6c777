package yamlconf

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type section struct {
	Port  int      `json:"port"`
	Hosts []string `json:"hosts,omitempty"`
	On    bool     `json:"on,omitempty"`
}

type conf struct {
	Name    string              `json:"name"`
	Server  section             `json:"server"`
	Peers   map[string][]string `json:"peers,omitempty"`
	Skipped string              `json:"-"`
}

// TestDecode: a good file decodes like its JSON; every problem of a bad
// one is reported at once with its line; overrides apply on top.
func TestDecode(t *testing.T) {
	var c conf
	if err := Decode([]byte("name: a\nserver:\n  port: 80\n  hosts: [x, y]\npeers:\n  b: [p]\n"), []string{"server.on=true", "server.port=81"}, &c); err != nil {
		t.Fatal(err)
	}
	want := conf{Name: "a", Server: section{Port: 81, Hosts: []string{"x", "y"}, On: true}, Peers: map[string][]string{"b": {"p"}}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("decoded %+v, want %+v", c, want)
	}
	err := Decode([]byte("nmae: a\nserver:\n  port: many\n  on: maybe\n  on: true\nSkipped: x\npeers:\n  b: p\n"), []string{"bad"}, &c)
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	got := strings.Split(es.Error(), "\n")
	wantErrs := []string{
		`bad: an override is key=value (overlay.gossip_interval=1s)`,
		`line 1: nmae: unknown key (did you mean "name"?)`,
		`line 3: server.port: want a whole number, got "many"`,
		`line 4: server.on: want true or false, got "maybe"`,
		`line 5: server.on: key given twice`,
		`line 6: Skipped: unknown key`,
		`line 8: peers.b: want a list, got "p"`,
	}
	if !reflect.DeepEqual(got, wantErrs) {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantErrs, "\n"))
	}
	if err := Decode([]byte("- a\n"), nil, &c); err == nil || !strings.Contains(err.Error(), "mapping") {
		t.Fatalf("a list as the config: %v", err)
	}
	if err := Decode([]byte("name: a\n"), []string{"name.x=1"}, &c); err == nil || !strings.Contains(err.Error(), "not a section") {
		t.Fatalf("override under a scalar: %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	got := EnvOverrides("APP_", conf{}, []string{"APP_SERVER__PORT=90", "APP_NAME=x", "APP_CONFIG=/etc/x", "OTHER_NAME=y", "APP_NAME"})
	if want := []string{"name=x", "server.port=90"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("overrides %q, want %q", got, want)
	}
}
