package overlay

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/lsnode/lsnode/pki"
)

type testFed struct {
	name string
	ca   *pki.CA
	psk  pnet.PSK
}

func newTestFed(t *testing.T, name string, withPSK bool) *testFed {
	t.Helper()
	ca, err := pki.NewCA(name+" CA", "lsnode test federation", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &testFed{name: name, ca: ca}
	if withPSK {
		if f.psk, err = pnet.DecodeV1PSK(bytes.NewReader(pki.NewPSK())); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// member returns an identity and a Federation holding a member certificate
// for it, issued by ca (the federation's own CA unless given) for overlay
// name, valid for validity.
func (f *testFed) member(t *testing.T, ca *testFed, name string, validity time.Duration) (crypto.PrivKey, *Federation) {
	t.Helper()
	if ca == nil {
		ca = f
	}
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	der, err := issueMember(ca.ca, id, name, validity)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.ca.Cert)
	return key, &Federation{PSK: f.psk, CAs: pool, Chain: [][]byte{der}, Revoked: map[string]bool{}}
}

// issueMember has ca issue a member certificate of overlay name for id.
func issueMember(ca *pki.CA, id peer.ID, name string, validity time.Duration) ([]byte, error) {
	pub, err := Ed25519Of(id)
	if err != nil {
		return nil, err
	}
	return ca.IssueMember(pub, id.String(), name, validity)
}

func startFed(t *testing.T, key crypto.PrivKey, name string, fed *Federation, boot []string) (*Overlay, error) {
	t.Helper()
	o, err := New(context.Background(), Config{Name: name, Identity: key, Bootstrap: boot, Federation: fed,
		GossipInterval: 100 * time.Millisecond, DisableDHTRefresh: true, Logger: quiet()})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { o.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return o, o.Join(ctx)
}

// TestFederationAdmission: members with the key and a certificate form the
// overlay; a node with the wrong key, none, no certificate, a certificate
// from another CA, for another overlay, expired or revoked does not get in,
// and says why.
func TestFederationAdmission(t *testing.T) {
	for _, withPSK := range []bool{true, false} {
		name := "fed-cert"
		if withPSK {
			name = "fed-psk"
		}
		t.Run(name, func(t *testing.T) {
			f := newTestFed(t, name, withPSK)
			var members []*Overlay
			var boot []string
			// The revoked member's certificate is on the CRL the members
			// hold; its own copy does not know yet.
			revokeMe, revokedFed := f.member(t, nil, name, time.Hour)
			leaf, _ := x509.ParseCertificate(revokedFed.Chain[0])
			for i := 0; i < 3; i++ {
				key, fed := f.member(t, nil, name, time.Hour)
				fed.Revoked[leaf.SerialNumber.String()] = true
				o, err := startFed(t, key, name, fed, boot)
				if err != nil {
					t.Fatal(err)
				}
				boot = o.Addrs()[:1]
				members = append(members, o)
			}
			waitMembers(t, members, 3)

			other := newTestFed(t, name, false)
			type outsider struct {
				what    string
				start   func() (*Overlay, error)
				atStart string // error at New (fail fast)
				atJoin  string // error at Join
			}
			plainKey, _ := GenerateIdentity()
			cases := []outsider{
				{what: "no federation config", start: func() (*Overlay, error) { return startFed(t, plainKey, name, nil, boot) },
					atJoin: map[bool]string{true: "its members need its key", false: "admits only nodes with a member certificate"}[withPSK]},
				{what: "certificate from another CA", start: func() (*Overlay, error) {
					k, fed := f.member(t, other, name, time.Hour)
					fed.CAs.AddCert(f.ca.Cert) // it trusts the federation, which does not trust its CA
					return startFed(t, k, name, fed, boot)
				}, atJoin: "refused this node"},
				{what: "revoked certificate", start: func() (*Overlay, error) { return startFed(t, revokeMe, name, revokedFed, boot) },
					atJoin: "is revoked"},
				{what: "expired certificate", start: func() (*Overlay, error) {
					k, fed := f.member(t, nil, name, -time.Minute)
					return startFed(t, k, name, fed, boot)
				}, atStart: "expired"},
				{what: "certificate for another overlay", start: func() (*Overlay, error) {
					k, fed := f.member(t, nil, "elsewhere", time.Hour)
					return startFed(t, k, name, fed, boot)
				}, atStart: "not a member certificate of overlay"},
				{what: "certificate of another key", start: func() (*Overlay, error) {
					_, fed := f.member(t, nil, name, time.Hour)
					k, _ := GenerateIdentity()
					return startFed(t, k, name, fed, boot)
				}, atStart: "another key"},
				{what: "no certificate", start: func() (*Overlay, error) {
					k, fed := f.member(t, nil, name, time.Hour)
					fed.Chain = nil
					return startFed(t, k, name, fed, boot)
				}, atStart: "no member certificate"},
			}
			if withPSK {
				cases = append(cases, outsider{what: "wrong private-network key", start: func() (*Overlay, error) {
					k, fed := f.member(t, nil, name, time.Hour)
					fed.PSK, _ = pnet.DecodeV1PSK(bytes.NewReader(pki.NewPSK()))
					return startFed(t, k, name, fed, boot)
				}, atJoin: "is not the overlay's"})
			}
			for _, c := range cases {
				o, err := c.start()
				t.Logf("%s: %v", c.what, err)
				switch {
				case c.atStart != "":
					if o != nil || err == nil || !strings.Contains(err.Error(), c.atStart) || !errors.Is(err, ErrMembership) {
						t.Errorf("%s: New = %v, want an ErrMembership error containing %q", c.what, err, c.atStart)
					}
					continue
				case o == nil:
					t.Errorf("%s: New failed: %v", c.what, err)
					continue
				case err == nil || !strings.Contains(err.Error(), c.atJoin):
					t.Errorf("%s: Join = %v, want an error containing %q", c.what, err, c.atJoin)
				}
				// Whatever it tried, the members neither list nor serve it.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				boot := members[len(members)-1]
				_ = o.members.join(ctx, boot.ID(), false)
				s, serr := o.host.NewStream(ctx, boot.ID(), boot.membersProtocol())
				if serr == nil {
					_ = s.SetDeadline(time.Now().Add(time.Second))
					_ = WriteFrame(s, []byte{7}) // a join without an entry
					_, serr = s.Read(make([]byte, 1))
				}
				cancel()
				t.Logf("%s: stream: %v", c.what, serr)
				if serr == nil || errors.Is(serr, os.ErrDeadlineExceeded) {
					t.Errorf("%s: a member served its membership stream", c.what)
				}
				for _, m := range members {
					for _, id := range m.Members() {
						if id == o.ID() {
							t.Errorf("%s: member %s lists the outsider", c.what, m.ID().ShortString())
						}
					}
				}
				if len(o.Members()) != 1 {
					t.Errorf("%s: outsider sees %d members", c.what, len(o.Members()))
				}
			}
			// The members still see exactly each other.
			waitMembers(t, members, 3)
		})
	}
}

// FuzzAdmission: whatever a peer sends as its certificate chain, decoding
// and verifying it neither panics nor admits it.
func FuzzAdmission(f *testing.F) {
	ca, err := pki.NewCA("fuzz CA", "fuzz", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	id, _ := GenerateIdentity()
	pid, _ := peer.IDFromPrivateKey(id)
	der, err := issueMember(ca, pid, "fuzz", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeChain([][]byte{der}))
	f.Add(encodeChain([][]byte{der, ca.Cert.Raw}))
	f.Add([]byte{0x05, 1, 2, 3})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	fed := &Federation{CAs: pool, Revoked: map[string]bool{}}
	other, _ := GenerateIdentity()
	otherID, _ := peer.IDFromPrivateKey(other)
	f.Fuzz(func(t *testing.T, b []byte) {
		chain, err := decodeChain(b)
		if err != nil {
			return
		}
		if len(chain) > maxChain {
			t.Fatalf("%d certificates decoded", len(chain))
		}
		// The chain is pid's: it must never pass for another peer.
		if _, err := fed.Verify(chain, otherID, "fuzz", time.Now()); err == nil {
			t.Fatal("a chain verified for a peer it was not issued to")
		}
	})
}

// TestSignMember: a member certificate signed from a CA directory for a
// peer ID verifies for that peer and overlay only, until the CA revokes it.
func TestSignMember(t *testing.T) {
	dir := t.TempDir()
	if err := pki.InitCA(dir, "test CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	key, _ := GenerateIdentity()
	id, _ := PeerIDOf(key)
	out := filepath.Join(t.TempDir(), "member.pem")
	if _, err := SignMember(dir, id, "fed", time.Hour, out); err != nil {
		t.Fatal(err)
	}
	load := func() *Federation {
		t.Helper()
		f, err := LoadFederation(filepath.Join(dir, pki.PSKFile), []string{filepath.Join(dir, pki.CACertFile)}, out, filepath.Join(dir, pki.CRLFile))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := load()
	other, _ := GenerateIdentity()
	otherID, _ := PeerIDOf(other)
	if _, err := f.Verify(f.Chain, id, "fed", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Verify(f.Chain, id, "other", time.Now()); !errors.Is(err, ErrMembership) {
		t.Errorf("for another overlay: %v", err)
	}
	if _, err := f.Verify(f.Chain, otherID, "fed", time.Now()); !errors.Is(err, ErrMembership) {
		t.Errorf("for another peer: %v", err)
	}
	if _, err := pki.Revoke(dir, out); err != nil {
		t.Fatal(err)
	}
	f = load()
	if _, err := f.Verify(f.Chain, id, "fed", time.Now()); err == nil || !strings.Contains(err.Error(), "is revoked") {
		t.Errorf("revoked: %v", err)
	}
}

// TestFirstWords: a handshake that stalls is read as a private-network
// key mismatch only when the peer's first bytes are not multistream's
// header in clear; a busy peer without a key (or one that says nothing)
// is left to the join's retries.
func TestFirstWords(t *testing.T) {
	serve := func(first []byte) peer.AddrInfo {
		l, err := manet.Listen(ma.StringCast("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				if first != nil {
					_, _ = c.Write(first)
				}
				time.AfterFunc(3*time.Second, func() { c.Close() })
			}
		}()
		return peer.AddrInfo{Addrs: []ma.Multiaddr{l.Multiaddr()}}
	}
	ctx := context.Background()
	nonce := bytes.Repeat([]byte{0xa7}, 24)
	for _, c := range []struct {
		what string
		ai   peer.AddrInfo
		want int
	}{
		{"multistream in clear", serve([]byte(multistreamHeader + "\x0d/noise\n")), speaksClear},
		{"a nonce and ciphertext", serve(nonce), speaksKeyed},
		{"silent", serve(nil), speaksNothing},
		{"nobody listening", peer.AddrInfo{Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}, speaksNothing},
	} {
		if got := firstWords(ctx, c.ai); got != c.want {
			t.Errorf("%s: firstWords = %d, want %d", c.what, got, c.want)
		}
	}
}
