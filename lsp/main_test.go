package lsp

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// service and overlay a test starts is closed, and Close waits for what it
// started. leveldb's memory pool drain (a datastore on disk: newDiskCluster)
// is the exception: it ends on its own up to a second after the datastore
// closes, and Close does not wait for it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}
