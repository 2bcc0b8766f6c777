package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every
// goroutine the proxy and its stack start must end on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
