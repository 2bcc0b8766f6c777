package testnet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// TestRelayCredentials: a SIP user fetches ephemeral TURN credentials from
// a domain node's HTTP endpoint with digest (their SIP password), and
// coturn's turnutils_uclient relays through that node's TURN server with
// them; no or wrong credentials get 401.
func TestRelayCredentials(t *testing.T) {
	for _, tool := range []string{"turnutils_uclient", "turnutils_peer"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian package coturn; .ci/run installs it)", tool)
		}
	}
	m, nw := startCallNet(t, nil)
	idx := domainNodes(nw, "a.example")[0]
	url := "http://" + nw.Node(idx).HTTPAddr() + "/turn/credentials"
	alice := domainUser(m, "a.example", 0)

	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("without credentials: %d, want 401 with a challenge", res.StatusCode)
	}
	wrong := &http.Client{Transport: &digest.Transport{Username: alice.Username, Password: "not-the-password"}}
	if res, err = wrong.Get(url); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("wrong password: %d, want 401", res.StatusCode)
	}
	client := &http.Client{Transport: &digest.Transport{Username: alice.Username, Password: alice.Password}}
	if res, err = client.Get(url); err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var creds struct {
		Username, Password string
		TTL                int
		URIs               []string
	}
	if err := json.NewDecoder(res.Body).Decode(&creds); err != nil || res.StatusCode != 200 {
		t.Fatalf("credentials: %d %v", res.StatusCode, err)
	}
	if !strings.HasSuffix(creds.Username, ":"+strings.TrimPrefix(alice.AOR, "sip:")) || len(creds.URIs) != 2 {
		t.Fatalf("credentials %+v", creds)
	}

	// A UDP echo peer, and coturn's client through the node's relay.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerPort := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	peer := exec.CommandContext(ctx, "turnutils_peer", "-L", "127.0.0.1", "-p", strconv.Itoa(peerPort))
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = peer.Process.Kill(); _ = peer.Wait() }()
	time.Sleep(200 * time.Millisecond)
	_, turnPort, _ := net.SplitHostPort(nw.Node(idx).Relay().Addr())
	var out bytes.Buffer
	uc := exec.CommandContext(ctx, "turnutils_uclient", "-u", creds.Username, "-w", creds.Password, "-e", "127.0.0.1",
		"-r", strconv.Itoa(peerPort), "-p", turnPort, "-n", "10", "-l", "160", "-c", "-z", "5", "127.0.0.1")
	uc.Stdout, uc.Stderr = &out, &out
	if err := uc.Run(); err != nil || !strings.Contains(out.String(), "tot_send_msgs=10, tot_recv_msgs=10") {
		t.Fatalf("turnutils_uclient with the fetched credentials: %v\n%s", err, out.String())
	}
}
