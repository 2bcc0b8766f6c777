package testnet_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-datastore/query"
	leveldb "github.com/ipfs/go-ds-leveldb"

	"github.com/lsnode/lsnode/node"
	"github.com/lsnode/lsnode/testnet"
)

// TestPrivateRecordsOnDisk: a sipp UA registers as bob@b.example with
// digest, and a sipp UAC calls him through a.example's proxy, which finds
// him in the overlay, on a testnet keeping records in clear and on one
// keeping them private (a public overlay's default). Then every node's
// datastore, read back from disk, is searched: in clear, bob's AOR and
// Contact are there (so the search sees records); private, neither is,
// only the domain.
func TestPrivateRecordsOnDisk(t *testing.T) {
	for _, mode := range []string{"clear", "private"} {
		t.Run(mode, func(t *testing.T) {
			spec := testnet.Spec{Dir: t.TempDir(), Nodes: 6, PerDomain: 2}
			m, err := testnet.Init(spec)
			if err != nil {
				t.Fatal(err)
			}
			tweak := func(c *node.Config) {
				fastGossip(c)
				c.Proxy.DNSServer = "off"
				if mode == "clear" {
					c.Overlay.Records = "clear"
				}
			}
			nw, err := testnet.Start(context.Background(), spec.Dir, testnet.RunOptions{Logger: quiet(), DisableDHTRefresh: true, Persist: true, Tweak: tweak})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nw.Close() })
			if got := nw.Node(0).Config().PrivateRecords(); got != (mode == "private") {
				t.Fatalf("node 0 keeps private records: %v", got)
			}
			aNode, bNodes := domainNodes(nw, "a.example")[0], domainNodes(nw, "b.example")
			bob := domainUser(m, "b.example", 0)
			user := strings.TrimPrefix(strings.Split(bob.AOR, "@")[0], "sip:")
			uasPort := freeUDPPort(t)
			contact := fmt.Sprintf("127.0.0.1:%d", uasPort)
			uas := startSipp(t, "uas", "uas.xml", uasPort, "-m", "1", "-timeout", "40s")
			if err := (sippRun{registrar: nw.Node(bNodes[0]).SIPAddr(), user: user, authUser: bob.Username, pass: bob.Password,
				domain: "b.example", contact: fmt.Sprintf("<sip:%s@%s>", user, contact), expires: 600, final: 200}).run(t); err != nil {
				t.Fatal(err)
			}
			bypassCall(t, nw, aNode, user, "b.example", bNodes, uas)

			var dirs []string
			for _, i := range nw.Running() {
				c := nw.Node(i).Config()
				dirs = append(dirs, filepath.Join(c.Path(c.Overlay.DataDir), "store"))
			}
			nw.Close()
			var all bytes.Buffer
			for _, d := range dirs {
				all.Write(dumpLevelDB(t, d))
			}
			secrets := []string{user + "@b.example", contact}
			for _, s := range secrets {
				if in := bytes.Contains(all.Bytes(), []byte(s)); in != (mode == "clear") {
					t.Errorf("%s records: %q in the stores on disk: %v", mode, s, in)
				}
			}
			if !bytes.Contains(all.Bytes(), []byte("@b.example")) {
				t.Error("the stores on disk lack even bob's domain: the search saw no record")
			}
		})
	}
}

// dumpLevelDB returns every key and value of the leveldb datastore in dir.
func dumpLevelDB(t *testing.T, dir string) []byte {
	t.Helper()
	d, err := leveldb.NewDatastore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := d.Query(ctx, query.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for r := range res.Next() {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		out.WriteString(r.Key)
		out.Write(r.Value)
	}
	return out.Bytes()
}
