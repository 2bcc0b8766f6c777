package lsp

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: every
// service and overlay a test starts is closed, and Close waits for what it
// started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
