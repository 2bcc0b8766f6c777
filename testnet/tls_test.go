package testnet_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/lsnode/lsnode/testnet"
)

// sipOverTLS sends one REGISTER over conn and returns the status line and headers.
func sipOverTLS(t *testing.T, conn *tls.Conn, aor, auth string, cseq int) (string, textproto.MIMEHeader) {
	t.Helper()
	msg := "REGISTER sip:a.example SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKtls%d%d\r\n", cseq, time.Now().UnixNano()) +
		"Max-Forwards: 70\r\nTo: <" + aor + ">\r\nFrom: <" + aor + ">;tag=t\r\nCall-ID: tls-1\r\n" +
		fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq) + "Contact: <sips:alice@127.0.0.1:5061>\r\nExpires: 600\r\n"
	if auth != "" {
		msg += "Authorization: " + auth + "\r\n"
	}
	msg += "Content-Length: 0\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	r := textproto.NewReader(bufio.NewReader(conn))
	line, err := r.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	return line, h
}

// TestRegistrarTLS registers over SIP/TLS with a client that verifies the
// domain certificate against the testnet CA; clients expecting another name
// or trusting another CA are refused by the handshake.
func TestRegistrarTLS(t *testing.T) {
	dir := t.TempDir()
	m, err := testnet.Init(testnet.Spec{Dir: dir, Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	nw, err := testnet.Start(context.Background(), dir, testnet.RunOptions{Logger: quiet(), DisableDHTRefresh: true, Tweak: fastGossip})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	addr := nw.Node(0).SIPTLSAddr()
	if addr == "" || addr != m.Nodes[0].SIPTLS {
		t.Fatalf("TLS address %q, manifest %q", addr, m.Nodes[0].SIPTLS)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, m.CA))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)

	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "b.example"}); err == nil {
		c.Close()
		t.Fatal("certificate accepted for the wrong domain")
	}
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.example"}); err == nil {
		c.Close()
		t.Fatal("certificate accepted without the testnet CA")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "a.example"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	alice := m.Domains[0].Users[0]
	line, h := sipOverTLS(t, conn, alice.AOR, "", 1)
	if !strings.HasPrefix(line, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %s", line)
	}
	chal, err := digest.ParseChallenge(h.Values("Www-Authenticate")[0])
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:a.example", Username: alice.Username,
		Password: alice.Password, Count: 1, Cnonce: "c0ffee"})
	if err != nil {
		t.Fatal(err)
	}
	if line, _ := sipOverTLS(t, conn, alice.AOR, cred.String(), 2); !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("authenticated REGISTER over TLS: %s", line)
	}
	bs, err := nw.Node(1).Location().Lookup(context.Background(), alice.AOR)
	if err != nil || len(bs) != 1 || bs[0].Contact != "sips:alice@127.0.0.1:5061" {
		t.Fatalf("b.example sees %+v, %v", bs, err)
	}
}
